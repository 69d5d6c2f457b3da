"""Flexible scoring beside strict: would the answer have been right, format aside?

lm-eval reports ``strict-match`` (the required format) beside ``flexible-extract`` (the last
number of the reply); the gap between them is format-following, apart from execution. Here
the strict score is the harness's only score: it decides turn and task accuracy, the horizon
and what the history shows the model. The flexible view is computed afterwards from the
stored replies, for the turns the strict parser rejected (:func:`tasks.parsing.flexible_answer`),
and changes nothing else.

Only the replies of format-error turns are read, found by their status bytes in
``turns.jsonl`` (a few memchr scans of the file), so a clean million-turn run costs nothing
extra; a file those bytes cannot vouch for is read record by record instead.
"""

from __future__ import annotations

import dataclasses
import json
import mmap
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from harness.analysis.metrics import column_means, score_matrices
from harness.records.schema import FORMAT_ERRORS, TURNS_FILE, iter_records
from harness.records.table import RecordTable
from tasks.parsing import flexible_answer


class FlexibleScores(BaseModel):
    """``summary.json``'s ``flexible``: index accuracy with the last integer of tagless replies."""

    model_config = ConfigDict(extra="forbid")

    index_accuracy: list[float | None]
    """Per turn: the strict answer, or for a format error the last integer of the visible
    reply, equals the true running total."""
    turns_rescued: int
    """Format-error turns whose last integer is the true running total."""
    turns_extracted: int
    """Format-error turns whose visible reply ends in an integer at all."""


def format_error_replies(run_dir: Path, expected: int) -> dict[tuple[int, int], str]:
    """Reply of the last format-error record of every (episode, turn) that has one.

    ``expected`` is how many records have a format-error status; when the byte search finds
    fewer (a file not in the writer's compact format), every record is read instead.
    """
    path = run_dir / TURNS_FILE
    if expected == 0 or not path.exists() or path.stat().st_size == 0:
        return {}
    found: dict[tuple[int, int], str] = {}
    seen = 0
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as raw:
        hits: list[int] = []
        for status in FORMAT_ERRORS:
            needle = f'"status":"{status}"'.encode()
            at = raw.find(needle)
            while at != -1:
                hits.append(at)
                at = raw.find(needle, at + len(needle))
        last_start = -1
        for at in sorted(hits):
            start = raw.rfind(b"\n", 0, at) + 1
            end = raw.find(b"\n", at)
            if end == -1 or start == last_start:
                continue  # a torn last line, or a second hit inside one reply
            last_start = start
            try:
                record = json.loads(raw[start:end])
            except ValueError:
                continue
            if record.get("status") in FORMAT_ERRORS:
                seen += 1
                found[(int(record["episode"]), int(record["turn"]))] = record.get("reply") or ""
    if seen >= expected:
        return found
    return {
        (r.episode, r.turn): r.reply for r in iter_records(run_dir) if r.status in FORMAT_ERRORS
    }


def flexible_scores(
    run_dir: Path, table: RecordTable, latest: RecordTable, *, episodes: int, turns: int, k: int
) -> FlexibleScores:
    """The flexible view of a run: ``table`` holds every record, ``latest`` one per turn."""
    replies = format_error_replies(run_dir, int(table.is_status(*FORMAT_ERRORS).sum()))
    answer, has_answer = latest.answer.copy(), latest.has_answer.copy()
    in_run = (latest.episode < episodes) & (latest.turn < turns)
    rows = np.flatnonzero(latest.is_status(*FORMAT_ERRORS) & in_run)
    extracted = 0
    for row in rows.tolist():
        reply = replies.get((int(latest.episode[row]), int(latest.turn[row])))
        value = None if reply is None else flexible_answer(reply)
        if value is not None:
            answer[row], has_answer[row] = value, True
            extracted += 1
    lenient = dataclasses.replace(latest, answer=answer, has_answer=has_answer)
    scores = score_matrices(lenient, episodes=episodes, turns=turns, k=k)
    rescued = has_answer[rows] & (answer[rows] == latest.truth[rows])
    curve = column_means(scores.index_correct)
    return FlexibleScores(
        index_accuracy=[float(v) if np.isfinite(v) else None for v in curve],
        turns_rescued=int(rescued.sum()),
        turns_extracted=extracted,
    )
