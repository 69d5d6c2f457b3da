"""A one-line live display of a run on a terminal; silent when output is not a terminal.

Shows what a researcher watching a long run wants to know: how far it is, how fast it goes,
how well the model is doing so far, and what it has spent.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from harness.economics.budget import Budget
from harness.records.schema import TurnRecord, fails_task
from harness.run.runner import RunProgress

REFRESH_SECONDS = 0.5


class ProgressLine:
    """Callable as the runner's ``on_turn`` hook."""

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
        self.failed_episodes: set[int] = set()
        self.started_episodes: set[int] = set()
        self._last_draw = 0.0

    def __call__(self, record: TurnRecord, progress: RunProgress) -> None:
        """Account for one finished turn and redraw at most every ``REFRESH_SECONDS``."""
        if not self.enabled:
            return
        self.started_episodes.add(record.episode)
        if fails_task(record):
            self.failed_episodes.add(record.episode)
        now = time.monotonic()
        if now - self._last_draw >= REFRESH_SECONDS:
            self._last_draw = now
            self.stream.write("\r" + self.render(progress) + "   ")
            self.stream.flush()

    def render(self, progress: RunProgress) -> str:
        """The text of the line."""
        elapsed = max(time.monotonic() - progress.started, 1e-9)
        started = len(self.started_episodes)
        alive = 1.0 - len(self.failed_episodes) / started if started else 1.0
        budget = self.budget
        unknown = not self.priced or budget.cost_unknown
        cost = "cost unknown" if unknown else f"${budget.spent_usd:,.4f}"
        return (
            f"{progress.episodes_done}/{progress.episodes_total} episodes | "
            f"{progress.turns_done / elapsed:.1f} turns/s | "
            f"episodes without a failure {alive:.0%} | {budget.spent_tokens:,} tokens | {cost}"
        )

    def close(self) -> None:
        """End the line so later output starts on a fresh one."""
        if self.enabled and self._last_draw:
            self.stream.write("\n")
            self.stream.flush()
