"""Format drift: in CoT mode, the share of called turns whose reply shows no working.

A model copies the format of its history. A CoT run whose replies stop showing the working
the system prompt teaches (the layout of :mod:`tasks.working`) measures a model answering in
direct mode, and a self-conditioning sweep may then measure that imitation rather than the
effect of earlier mistakes. The share is computed from the stored replies, so
``lhe-summarize`` recomputes it from ``turns.jsonl`` alone.

The replies are read through the validated record reader, one record at a time, keeping one
flag per turn: the column reader of the summary skips reply text on purpose, and a CoT run,
which pays for hundreds of generated tokens a turn, is never large enough for this to matter.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from harness.records.schema import TurnRecord, iter_records
from tasks.parsing import strip_reasoning
from tasks.working import shows_working

if TYPE_CHECKING:
    import pandas as pd

DRIFT_WARNING_SHARE = 0.2
"""Above this share of CoT replies without working, the printed table and the report warn."""
DRIFT_WARNING = "the model stopped showing its working: results may measure format imitation"


class FormatDrift(BaseModel):
    """Called CoT turns with a reply, and how many of them show no working line."""

    model_config = ConfigDict(extra="forbid")

    replies: int
    """Turns the model was called at and answered (format errors included)."""
    without_working: int
    """Of those, replies whose visible text has no line of the taught layout."""
    share: float | None
    """without_working / replies; None when no turn got a reply."""


def format_drift(records: Iterable[TurnRecord]) -> FormatDrift:
    """Format drift over the last record of every (episode, turn).

    A turn counts when the model was called and answered (any parse status, format errors
    included); filled turns and turns without a reply (provider error, context exceeded) do
    not. Only the visible reply counts: working inside ``<think>`` never reaches the history.
    """
    working: dict[tuple[int, int], bool | None] = {}
    for record in records:
        answered = record.parse_status is not None
        visible = strip_reasoning(record.reply)[0] if answered else ""
        working[(record.episode, record.turn)] = shows_working(visible) if answered else None
    flags = [flag for flag in working.values() if flag is not None]
    without = flags.count(False)
    return FormatDrift(
        replies=len(flags), without_working=without, share=without / len(flags) if flags else None
    )


def run_format_drift(run_dir: Path, mode: str) -> FormatDrift | None:
    """The ``format_drift`` of a run's summary: None outside CoT mode."""
    if mode != "cot":
        return None
    return format_drift(iter_records(run_dir))


def drift_warning(drift: FormatDrift | None) -> str | None:
    """The warning line for a format drift above the threshold, else None."""
    if drift is None or drift.share is None or drift.share <= DRIFT_WARNING_SHARE:
        return None
    return (
        f"format drift {drift.share:.0%} ({drift.without_working} of {drift.replies} CoT "
        f"replies show no working); {DRIFT_WARNING}"
    )


DRIFT_BY_RATE_COLUMNS = [
    "model",
    "mode",
    "history",
    "rate",
    "target_turn",
    "target_turn_accuracy",
    "format_drift",
]


def drift_by_rate(table: pd.DataFrame) -> pd.DataFrame:
    """The self-conditioning runs of a sweep table: turn-T accuracy and format drift per rate."""
    runs = table[table["experiment"] == "self_conditioning"]
    return runs[DRIFT_BY_RATE_COLUMNS].sort_values(["model", "mode", "rate"], kind="stable")


def drift_by_rate_title(frame: pd.DataFrame) -> str:
    """Heading of that table, with the warning when a run drifted above the threshold."""
    title = "Self-conditioning: turn-T accuracy and format drift per rate"
    if (frame["format_drift"].astype(float) > DRIFT_WARNING_SHARE).any():
        title += f" (format drift above {DRIFT_WARNING_SHARE:.0%}: {DRIFT_WARNING})"
    return title
