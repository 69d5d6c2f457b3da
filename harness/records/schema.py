"""Per-turn records: the one thing a run writes while it works.

``turns.jsonl`` gets one JSON line per finished turn, appended and flushed as soon as the turn
ends, so a crash loses at most the turns in flight. Everything downstream (metrics, summary,
report, resume) reads this file and nothing else about the run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from providers.base import Outcome, Usage
from tasks.parsing import ParseStatus

TURNS_FILE = "turns.jsonl"

MAX_STORED_CHARS = 65_536
"""Replies and reasoning longer than this are stored cut, with their original length: a
server that answers with megabytes must not bloat every later read of the run."""

TurnStatus = Literal[
    "ok",
    "no_answer",
    "bad_format",
    "unterminated_think",
    "context_exceeded",
    "provider_error",
    "filled",
]


FORMAT_ERRORS = ("no_answer", "bad_format", "unterminated_think")
"""Statuses that mean the provider answered but the reply held no usable integer."""
UNSCORED_STATUSES = ("provider_error", "filled")
"""Statuses that carry no score: the provider failed, or the turn was filled without a call."""


class SampleRecord(BaseModel):
    """One sample of a turn drawn under a voting strategy (its reply text is not kept)."""

    model_config = ConfigDict(extra="forbid")

    index: int
    """Sample index within the turn, from 0 (its seed derives from it)."""
    seed: int
    """The sampling seed it was requested with."""
    status: ParseStatus
    """Parse status of its reply."""
    answer: int | None = None
    """Its parsed answer."""
    red_flag: Literal["overlong", "format"] | None = None
    """Why it was discarded before voting, if it was."""
    usage: Usage = Field(default_factory=Usage)
    """Its tokens."""
    cache_hit: bool = False
    """True when the response cache answered it."""
    finish_reason: str | None = None
    """Why its generation stopped."""


class TurnRecord(BaseModel):
    """One finished turn of one episode."""

    model_config = ConfigDict(extra="forbid")

    episode: int
    """Episode index in the task set."""
    turn: int
    """Turn index within the episode, from 0."""
    keys: list[str]
    """The words of this turn's user message."""
    delta: int
    """Sum of this turn's values: what a correct update adds."""
    truth: int
    """True running total after this turn."""
    base: int
    """The total the model should have built on: the last answer its history shows (0 at turn 0).
    Turn accuracy compares ``answer`` with ``base + delta``."""
    status: TurnStatus
    """Parse status of the reply when the provider answered, else the provider outcome."""
    answer: int | None = None
    """The parsed integer, if any."""
    reply: str = ""
    """The raw visible reply (cut at ``MAX_STORED_CHARS``; see ``reply_chars``)."""
    reply_chars: int | None = None
    """Original length of a reply that was stored cut; None when stored whole."""
    reasoning: str | None = None
    """Reasoning the provider returned apart from the reply (never shown to the model again;
    cut like ``reply``)."""
    usage: Usage = Field(default_factory=Usage)
    """Token counts of this turn's request."""
    latency_s: float = 0.0
    """Wall time of the request, retries included."""
    finish_reason: str | None = None
    """Why generation stopped, as reported."""
    retries: int = 0
    """Retried attempts the request needed."""
    retry_reasons: dict[str, int] = Field(default_factory=dict)
    """Failure class of each retried attempt (``429``, ``503``, ``timeout``, ...)."""
    cache_hit: bool = False
    """True when the reply came from the response cache (no tokens were spent on it)."""
    model_id: str | None = None
    """Model id the provider reported."""
    error: str | None = None
    """Reason of a ``provider_error`` or ``context_exceeded`` turn."""
    filled: bool = False
    """True when the turn was written into the history without calling the model
    (``history.target_turn``); such turns have status ``filled`` and are not scored."""
    shown: int | None = None
    """The answer the history shows for this turn afterwards (rewritten under healed or
    injected histories; the model's own answer otherwise)."""
    shown_text: str | None = None
    """The assistant message the history shows for this turn when the harness wrote it
    (filled, healed or injected turns: a tag, or in CoT mode the written working); None when
    the history shows the model's own reply."""
    injected: bool = False
    """True when ``shown`` is the truth plus an injected error."""
    sample_answers: list[int | None] | None = None
    """Parsed answer of every sample when several were drawn (majority vote)."""
    agreement: float | None = None
    """Share of the valid votes that gave the winning answer."""
    n_samples: int = 1
    """Samples drawn for this turn, red-flagged ones included (``usage`` sums them all)."""
    red_flags: int = 0
    """Samples discarded before voting (overlong or unparseable under ``strategy.red_flag``)."""
    capped: bool = False
    """``strategy.max_samples`` was reached before the strategy decided (plurality taken)."""
    vote_margin: int | None = None
    """Votes of the winning answer minus those of the runner-up (None: a single sample)."""
    vote_counts: list[tuple[int | None, int]] | None = None
    """Valid votes per answer, most first (None is "no parseable answer")."""
    samples: list[SampleRecord] | None = None
    """Every sample of a voting strategy; None for a single sample."""

    @property
    def outcome(self) -> Outcome:
        """The provider-level outcome behind ``status``."""
        if self.status in ("context_exceeded", "provider_error"):
            return self.status  # type: ignore[return-value]
        return "ok"

    @property
    def parse_status(self) -> ParseStatus | None:
        """The parser's classification, when the provider answered."""
        if self.outcome != "ok" or self.filled:
            return None
        return self.status  # type: ignore[return-value]


class TokenTally(BaseModel):
    """Tokens of the requests a run paid for: model calls not served by the response cache."""

    model_config = ConfigDict(extra="forbid")

    prompt_tokens: int = 0
    """Tokens read, provider-side prompt-cache hits included."""
    completion_tokens: int = 0
    """Tokens generated, reasoning included."""
    reasoning_tokens: int = 0
    """Part of ``completion_tokens`` spent in a hidden reasoning channel."""
    cached_tokens: int = 0
    """Part of ``prompt_tokens`` the provider served from its prompt cache (priced lower)."""
    total: int = 0
    """prompt + completion."""
    requests: int = 0
    """Paid requests."""
    estimated: bool = False
    """True when any count was approximated by the harness, not reported by the backend."""


def fails_task(record: TurnRecord) -> bool:
    """The one rule for "this turn failed the task": scored, and not the true running total.

    That covers wrong numbers, format errors (no answer) and running out of context. A
    provider error or a filled-in turn was never the model's answer, so it fails nothing.
    :meth:`harness.records.table.RecordTable.fails_task` is the same rule over columns.
    """
    return record.status not in UNSCORED_STATUSES and record.answer != record.truth


class TurnWriter:
    """Appends records to ``turns.jsonl``, one flushed line each."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / TURNS_FILE
        drop_torn_tail(self.path)
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, record: TurnRecord) -> None:
        """Append one record; it is on disk (in the OS's buffers) when this returns."""
        self._file.write(record.model_dump_json() + "\n")
        self._file.flush()

    def close(self) -> None:
        """Flush to stable storage and close."""
        if not self._file.closed:
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self) -> TurnWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def drop_torn_tail(path: Path, chunk: int = 65_536) -> None:
    """Cut a last line that has no newline: the process died while writing it.

    Appending after such a fragment would glue the next record onto it, and that record
    would then be skipped as unreadable and its turn run (and paid for) again.
    """
    if not path.exists():
        return
    with path.open("rb+") as handle:
        end = handle.seek(0, os.SEEK_END)
        position = end
        while position > 0:
            start = max(0, position - chunk)
            handle.seek(start)
            block = handle.read(position - start)
            if position == end and block.endswith(b"\n"):
                return  # the last line is whole
            newline = block.rfind(b"\n")
            if newline != -1:
                handle.truncate(start + newline + 1)
                return
            position = start
        handle.truncate(0)  # not one whole line


def iter_records(run_dir: Path) -> Iterator[TurnRecord]:
    """Read every complete record; a torn last line (from a crash mid-write) is skipped."""
    path = run_dir / TURNS_FILE
    if not path.exists():
        return
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                break  # torn tail: the process died while writing it
            try:
                yield TurnRecord.model_validate(json.loads(line))
            except (ValueError, TypeError):
                continue


def read_records(run_dir: Path) -> list[TurnRecord]:
    """All complete records of a run, in file order."""
    return list(iter_records(run_dir))


def latest_records(records: list[TurnRecord]) -> dict[tuple[int, int], TurnRecord]:
    """The last record of every (episode, turn): a resumed turn supersedes its failed attempt."""
    latest: dict[tuple[int, int], TurnRecord] = {}
    for record in records:
        latest[(record.episode, record.turn)] = record
    return latest


def clip(text: str | None) -> tuple[str | None, int | None]:
    """Cut text longer than ``MAX_STORED_CHARS``; returns (stored text, original length)."""
    if text is None or len(text) <= MAX_STORED_CHARS:
        return text, None
    return text[:MAX_STORED_CHARS], len(text)
