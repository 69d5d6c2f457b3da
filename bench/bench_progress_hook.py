"""CPU cost per turn of the progress hooks: one process's line and a worker's shared counts.

With ``run.workers`` every worker counts its turns into a small shared-memory struct
(:class:`harness.run.workers.WorkerChannel`) that the parent reads twice a second, instead
of sending the parent a message per turn. This times, per turn, in one process:

* ``encode``: ``TurnRecord.model_dump_json()``, the encoding every turn pays anyway (a
  yardstick);
* ``line``: the one-process ``ProgressLine`` hook, drawing to a string buffer (at most every
  0.5 s, as on a terminal);
* ``worker``: a worker's ``WorkerChannel.on_turn`` (the tally plus the shared-struct stores);
* ``pipe``: what a message per turn would cost instead: the same counts sent over a
  ``multiprocessing`` pipe to a reading process (send side only).

    python bench/bench_progress_hook.py
    python bench/bench_progress_hook.py --turns 200000
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import multiprocessing
import os
import time

from harness.economics.budget import Budget
from harness.records.schema import TurnRecord
from harness.run.progress import ProgressLine
from harness.run.runner import RunProgress
from harness.run.workers import SharedCounts, WorkerChannel
from providers.base import Usage


@dataclasses.dataclass
class _Runner:
    """What a channel reads from its runner."""

    progress: RunProgress
    budget: Budget


def records(turns: int, episodes: int = 100) -> list[TurnRecord]:
    """Turns of ``episodes`` episodes, some answering wrong, with usage."""
    return [
        TurnRecord(
            episode=i % episodes,
            turn=i // episodes,
            keys=["arbor", "minor"],
            delta=3,
            truth=41,
            base=38,
            status="ok",
            answer=41 if i % 7 else 40,
            reply="<answer>41</answer>",
            usage=Usage(prompt_tokens=120, completion_tokens=9),
        )
        for i in range(turns)
    ]


def per_turn_us(hook, batch: list[TurnRecord], progress: RunProgress, budget: Budget) -> float:
    started = time.process_time()
    for record in batch:
        progress.turns_done += 1
        budget.add(record)
        hook(record, progress)
    return 1e6 * (time.process_time() - started) / len(batch)


def _drain(pipe) -> None:
    while pipe.recv() is not None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=100_000)
    turns = parser.parse_args().turns
    batch = records(turns)
    load = os.getloadavg()[0]

    started = time.process_time()
    for record in batch:
        record.model_dump_json()
    encode = 1e6 * (time.process_time() - started) / turns

    def fresh() -> tuple[RunProgress, Budget]:
        return RunProgress(episodes_total=100), Budget()

    progress, budget = fresh()
    line = ProgressLine(budget, priced=False, stream=io.StringIO(), force=True)
    line_us = per_turn_us(line, batch, progress, budget)

    progress, budget = fresh()
    channel = WorkerChannel(0, 1, SharedCounts())
    channel.listen()

    async def worker() -> float:
        with channel.attached(_Runner(progress, budget)):  # type: ignore[arg-type]
            return per_turn_us(channel.on_turn, batch, progress, budget)

    worker_us = asyncio.run(worker())

    progress, budget = fresh()
    receive, send = multiprocessing.Pipe(duplex=False)
    reader = multiprocessing.Process(target=_drain, args=(receive,))
    reader.start()
    tally = ProgressLine(budget, force=True, stream=io.StringIO()).tally

    def message(record: TurnRecord, progress: RunProgress) -> None:
        tally.add(record)
        send.send(dataclasses.astuple(tally.counts(progress, budget)))

    pipe_us = per_turn_us(message, batch, progress, budget)
    send.send(None)
    reader.join()

    print(f"{turns:,} turns, load average {load:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"{'hook':<34} {'CPU us/turn':>12} {'vs encode':>10}")
    rows = [
        ("encode (every turn pays it)", encode),
        ("line (one process)", line_us),
        ("worker (shared struct)", worker_us),
        ("pipe (a message per turn)", pipe_us),
    ]
    for name, value in rows:
        print(f"{name:<34} {value:>12.2f} {value / encode:>9.2f}x")
    print(f"pipe / worker: {pipe_us / worker_us:.1f}x")


if __name__ == "__main__":
    main()
