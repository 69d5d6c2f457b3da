"""Stand-ins for one worker's run (a ``ShardWork``), for tests of ``run.workers`` without a model.

A worker process imports its work by name, so these live in an importable module, not in a
test file.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from harness.config import RunConfig
from harness.economics.budget import Budget
from harness.run.runner import RunProgress
from harness.run.workers import WorkerChannel

SCRIPTED_FATAL_ERROR = "scripted fatal error"


class StopWaiter:
    """The part of a ``Runner`` a :class:`WorkerChannel` drives: it only waits to be stopped."""

    def __init__(self, episodes: int) -> None:
        self.progress = RunProgress(episodes_total=episodes)
        self.budget = Budget()
        self.stopped = asyncio.Event()

    def stop(self, reason: str) -> None:
        """As ``Runner.stop``: note why."""
        self.progress.stopped_by = self.progress.stopped_by or reason
        self.stopped.set()

    def abort(self) -> None:
        """As ``Runner.abort``: nothing is in flight."""


async def worker_zero_fails(
    config: RunConfig, run_dir: Path, channel: WorkerChannel
) -> tuple[RunProgress, float]:
    """Worker 0 ends at once with a fatal error; every other worker runs until it is stopped."""
    waiter = StopWaiter(config.task.samples)
    if channel.index == 0:
        waiter.progress.fatal_error = SCRIPTED_FATAL_ERROR
        return waiter.progress, 0.0
    with channel.attached(waiter):  # type: ignore[arg-type]  # the runner's interface, in part
        await waiter.stopped.wait()
    return waiter.progress, 0.0
