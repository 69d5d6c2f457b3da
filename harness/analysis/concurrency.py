"""What the adaptive concurrency limit did in a run (``run.concurrency=auto``).

Read from the run's side file ``concurrency.jsonl`` (written by
:class:`providers.concurrency.LimitLog`), so ``lhe-summarize`` gets the same block as the
run's own summary. Runs with a fixed limit have no side file and no block.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from providers.concurrency import LimitEvent, read_limit_log


class LimitSummary(BaseModel):
    """The ``concurrency`` block of ``summary.json``."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["auto"] = "auto"
    """How the limit was set (only adaptive limits are logged)."""
    min_limit: int
    """Lowest limit of any worker (the start: ``run.concurrency_min``)."""
    max_limit: int
    """Highest limit of any worker."""
    final_limit: int
    """Sum over workers of their last limit."""
    decreases: int
    """Times a limit shrank."""
    overloads: int
    """429/503 replies the controllers saw."""
    overloads_429: int
    """Of those, 429s."""
    pauses: int
    """Retry-After pauses of the endpoint."""
    paused_s: float
    """Their total length, in seconds (overlapping pauses counted each)."""


def limit_summary(run_dir: Path) -> LimitSummary | None:
    """Range of the limit, overloads and pauses, over every worker of the run."""
    events = list(read_limit_log(run_dir))
    if not events:
        return None
    limits = [e.limit for e in events]
    last = {}
    for event in events:
        last[event.worker] = event.limit
    overloads = [e for e in events if e.event == "overload"]
    pauses = [e.pause_s or 0.0 for e in events if e.event == "pause"]
    return LimitSummary(
        min_limit=min(limits),
        max_limit=max(limits),
        final_limit=sum(last.values()),
        decreases=sum(e.event == "decrease" for e in events),
        overloads=len(overloads),
        overloads_429=sum(e.status == 429 for e in overloads),
        pauses=len(pauses),
        paused_s=round(sum(pauses), 3),
    )


def limit_series(events: list[LimitEvent], worker: int) -> tuple[list[float], list[int]]:
    """(times, limits) of one worker as a step series, for plotting."""
    times, limits = [], []
    for event in events:
        if event.worker == worker:
            times.append(event.t)
            limits.append(event.limit)
    return times, limits
