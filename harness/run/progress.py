"""A one-line live display of a run on a terminal; silent when output is not a terminal.

Shows what a researcher watching a long run wants to know: how far it is, how fast it goes,
how well the model is doing so far, and what it has spent. With ``run.workers`` each worker
keeps the same counts for its shard (:class:`ProgressCounts`) and the parent draws their sum
in the same format.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from typing import TextIO

from harness.economics.budget import Budget
from harness.records.schema import TurnRecord, fails_task
from harness.run.runner import RunProgress

REFRESH_SECONDS = 0.5


@dataclass(frozen=True)
class ProgressCounts:
    """What the line shows, as counts: those of disjoint shards of episodes add up."""

    episodes_done: int = 0
    turns_done: int = 0
    episodes_started: int = 0
    """Episodes with at least one record of this session."""
    episodes_failed: int = 0
    """Of those, the episodes with a turn that failed the task."""
    tokens: int = 0
    usd: float = 0.0
    cost_unknown: bool = False

    def __add__(self, other: ProgressCounts) -> ProgressCounts:
        """The counts of two shards together."""
        values = {
            f.name: getattr(self, f.name) + getattr(other, f.name)
            for f in dataclasses.fields(self)
            if f.name != "cost_unknown"
        }
        return ProgressCounts(**values, cost_unknown=self.cost_unknown or other.cost_unknown)


class EpisodeTally:
    """The episodes a session's records touched, and those that failed the task."""

    def __init__(self) -> None:
        self.started: set[int] = set()
        self.failed: set[int] = set()

    def add(self, record: TurnRecord) -> None:
        """Account for one finished turn."""
        self.started.add(record.episode)
        if fails_task(record):
            self.failed.add(record.episode)

    def counts(self, progress: RunProgress, budget: Budget) -> ProgressCounts:
        """Everything the line shows, from these sets, the runner's counters and the budget."""
        return ProgressCounts(
            episodes_done=progress.episodes_done,
            turns_done=progress.turns_done,
            episodes_started=len(self.started),
            episodes_failed=len(self.failed),
            tokens=budget.spent_tokens,
            usd=budget.spent_usd,
            cost_unknown=budget.cost_unknown,
        )


def format_line(counts: ProgressCounts, episodes_total: int, elapsed: float, priced: bool) -> str:
    """The text of the line (``priced``: a price is known, so dollars mean something)."""
    started = counts.episodes_started
    alive = 1.0 - counts.episodes_failed / started if started else 1.0
    cost = "cost unknown" if not priced or counts.cost_unknown else f"${counts.usd:,.4f}"
    return (
        f"{counts.episodes_done}/{episodes_total} episodes | "
        f"{counts.turns_done / max(elapsed, 1e-9):.1f} turns/s | "
        f"episodes without a failure {alive:.0%} | {counts.tokens:,} tokens | {cost}"
    )


class ProgressLine:
    """Callable as the runner's ``on_turn`` hook; :meth:`show` draws given counts."""

    def __init__(
        self,
        budget: Budget,
        *,
        priced: bool = True,
        stream: TextIO | None = None,
        force: bool = False,
    ) -> None:
        self.budget = budget
        """The run's spending tally: the progress line shows what the limits check."""
        self.priced = priced
        self.stream = stream or sys.stderr
        self.enabled = force or self.stream.isatty()
        self.tally = EpisodeTally()
        self._last_draw = 0.0
        self._progress: RunProgress | None = None
        """The runner's counters, as last seen by the hook (redrawn once more at the end)."""

    def __call__(self, record: TurnRecord, progress: RunProgress) -> None:
        """Account for one finished turn and redraw at most every ``REFRESH_SECONDS``."""
        if not self.enabled:
            return
        self.tally.add(record)
        self._progress = progress
        if time.monotonic() - self._last_draw >= REFRESH_SECONDS:
            self.show(self.tally.counts(progress, self.budget), progress)

    def show(self, counts: ProgressCounts, progress: RunProgress) -> None:
        """Redraw the line now (``progress``: the run's total and start time)."""
        if not self.enabled:
            return
        self._last_draw = time.monotonic()
        elapsed = self._last_draw - progress.started
        line = format_line(counts, progress.episodes_total, elapsed, self.priced)
        self.stream.write("\r" + line + "   ")
        self.stream.flush()

    def close(self) -> None:
        """Draw the final counts, then end the line so later output starts on a fresh one.

        The hook's last draw may be up to a refresh old, and miss the last episodes' ends.
        """
        if self._progress is not None:
            self.show(self.tally.counts(self._progress, self.budget), self._progress)
        if self.enabled and self._last_draw:
            self.stream.write("\n")
            self.stream.flush()
