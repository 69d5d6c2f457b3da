"""A one-line live display of a run on a terminal; silent when output is not a terminal.

Shows what a researcher watching a long run wants to know: how far it is, how fast it goes,
how well the model is doing so far, and what it has spent.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from harness.records.schema import TurnRecord
from harness.run.runner import RunProgress
from providers.base import Usage

REFRESH_SECONDS = 0.5


class ProgressLine:
    """Callable as the runner's ``on_turn`` hook."""

    def __init__(
        self,
        stream: TextIO | None = None,
        cost_of: Callable[[Usage], float | None] | None = None,
        force: bool = False,
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = force or self.stream.isatty()
        self.cost_of = cost_of
        self.tokens = 0
        self.cost: float | None = 0.0 if cost_of else None
        self.failed_episodes: set[int] = set()
        self.started_episodes: set[int] = set()
        self._last_draw = 0.0

    def __call__(self, record: TurnRecord, progress: RunProgress) -> None:
        """Account for one finished turn and redraw at most every ``REFRESH_SECONDS``."""
        if not self.enabled:
            return
        self.started_episodes.add(record.episode)
        if (
            not record.filled
            and record.status != "provider_error"
            and record.answer != record.truth
        ):
            self.failed_episodes.add(record.episode)
        if not record.cache_hit:
            self.tokens += record.usage.prompt_tokens + record.usage.completion_tokens
            if self.cost is not None and self.cost_of is not None:
                cost = self.cost_of(record.usage)
                self.cost = None if cost is None else self.cost + cost
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
        cost = "cost unknown" if self.cost is None else f"${self.cost:,.4f}"
        return (
            f"{progress.episodes_done}/{progress.episodes_total} episodes | "
            f"{progress.turns_done / elapsed:.1f} turns/s | "
            f"episodes without a failure {alive:.0%} | {self.tokens:,} tokens | {cost}"
        )

    def close(self) -> None:
        """End the line so later output starts on a fresh one."""
        if self.enabled and self._last_draw:
            self.stream.write("\n")
            self.stream.flush()
