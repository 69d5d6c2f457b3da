"""Shard the episodes of one run over several processes (``run.workers=N``).

One event loop spends about half a millisecond of CPU per HTTP request, so one process tops
out at a few thousand requests a second; a GPU server answers more. With ``run.workers=N``
the parent starts N processes (forked from a fresh server process, never from the parent's
running event loop), worker
i runs episodes i, i + N, i + 2N, ... with its own event loop, connection pool and (with
``run.concurrency=auto``) its own adaptive limit, and writes its records to its own
``workers/<i>/turns.jsonl``. When they are done the parent appends the shards to the run's
``turns.jsonl`` and removes them, so every later stage reads one file; a session killed
before that leaves the shards, and the next session merges them before it reads anything.

Each episode is still one coroutine in one process and every request's seed depends only on
(run seed, episode, turn), so the records are those of ``run.workers=1`` (file order and
timings aside). ``run.concurrency`` (or ``concurrency_min``/``_max``) is split between the
workers, so the run as a whole keeps the configured number in flight.

Signals: workers leave the terminal's process group, so Ctrl-C reaches the parent only; it
passes each signal on to every worker by pid (first: finish the turns in flight; second:
drop them), and the records on disk stay whole turns.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import multiprocessing
import os
import shutil
import signal
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from harness.config import RunConfig
from harness.event_loop import run_async
from harness.records.schema import TURNS_FILE, drop_torn_tail
from harness.run.runner import RunProgress

SHARDS_DIR = "workers"
"""Folder of a run directory holding one sub-folder of records per worker while it runs."""


ShardWork = Callable[[RunConfig, Path, int, int], Awaitable[tuple[RunProgress, float]]]
"""One worker's run: (config, run dir, worker index, workers) -> (progress, run seconds)."""


def shard_episodes(samples: int, workers: int, index: int) -> list[int]:
    """Episodes of worker ``index``: every ``workers``-th, so all shards are alike in size."""
    return list(range(index, samples, workers))


def worker_config(config: RunConfig, workers: int) -> RunConfig:
    """The config one worker runs: in-flight counts divided between the workers."""
    run = config.run
    share = {
        "concurrency": run.concurrency
        if run.concurrency == "auto"
        else max(1, math.ceil(run.concurrency / workers)),
        "concurrency_min": max(1, math.ceil(run.concurrency_min / workers)),
        "concurrency_max": max(1, math.ceil(run.concurrency_max / workers)),
        "progress": False,
    }
    return config.model_copy(update={"run": run.model_copy(update=share)})


def merge_shards(run_dir: Path) -> int:
    """Append every worker's whole records to ``turns.jsonl``, then delete the shards.

    Returns the number of lines moved. Safe to repeat after a crash halfway: a shard is
    deleted only after its lines are on disk in the main file, and a shard's torn last line
    (a worker killed mid-write) is dropped first.
    """
    shards = run_dir / SHARDS_DIR
    if not shards.is_dir():
        return 0
    moved = 0
    target = run_dir / TURNS_FILE
    drop_torn_tail(target)
    for shard in sorted(p for p in shards.iterdir() if p.is_dir()):
        source = shard / TURNS_FILE
        if source.exists():
            drop_torn_tail(source)
            with source.open("rb") as lines, target.open("ab") as out:
                for line in lines:
                    out.write(line)
                    moved += 1
                out.flush()
                os.fsync(out.fileno())
        shutil.rmtree(shard)
    shards.rmdir()
    return moved


def _combine(parts: list[dict[str, Any]], started: float, total: int) -> RunProgress:
    progress = RunProgress(episodes_total=total, started=started)
    for part in parts:
        for name in ("episodes_done", "turns_done", "turns_resumed", "provider_errors"):
            setattr(progress, name, getattr(progress, name) + part.get(name, 0))
        for name in ("fatal_error", "stopped_by", "last_provider_error"):
            if getattr(progress, name) is None and part.get(name) is not None:
                setattr(progress, name, part[name])
    return progress


def _context() -> multiprocessing.context.BaseContext:
    """``forkserver`` with the pipeline preloaded: one import for every worker of a session.

    Each worker then forks from a process that has no event loop and no threads; where
    there is no forkserver (not POSIX), ``spawn`` (every worker imports anew).
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["harness.pipeline", "providers.openai_compatible"])
    return context


class ShardedRunner:
    """Runs a config's episodes in ``run.workers`` processes; the interface of ``Runner``."""

    def __init__(self, config: RunConfig, run_dir: Path, work: ShardWork) -> None:
        self.config = config
        self.run_dir = run_dir
        self.work = work
        """What one worker process runs (``harness.pipeline.run_shard``): passed in, so this
        module needs nothing from the pipeline that wires it."""
        self.workers = config.run.workers
        self.progress = RunProgress(episodes_total=config.task.samples)
        self._processes: list[multiprocessing.process.BaseProcess] = []
        self.worker_cpu: list[float] = []
        """CPU seconds of each worker process, once they are done (for benchmarks)."""
        self.worker_run_s: list[float] = []
        """Wall seconds of each worker's own ``Runner.run`` (start-up excluded)."""

    async def run(self) -> RunProgress:
        """Start the workers, wait for all of them, merge their records."""
        merge_shards(self.run_dir)
        context = _context()
        shard_config = worker_config(self.config, self.workers).model_dump_json()
        pipes = []
        for index in range(self.workers):
            receive, send = context.Pipe(duplex=False)
            process = context.Process(
                target=_worker_main,
                args=(self.work, shard_config, str(self.run_dir), index, self.workers, send),
                name=f"lhe-worker-{index}",
            )
            process.start()
            send.close()
            self._processes.append(process)
            pipes.append(receive)
        parts = await asyncio.gather(
            *(asyncio.to_thread(_result, p, c) for p, c in zip(self._processes, pipes, strict=True))
        )
        merge_shards(self.run_dir)
        self.worker_cpu = [part.get("cpu_s", 0.0) for part in parts]
        self.worker_run_s = [part.get("run_s", 0.0) for part in parts]
        progress = _combine(parts, self.progress.started, self.config.task.samples)
        if self.progress.stopped_by is not None:
            progress.stopped_by = self.progress.stopped_by
        self.progress = progress
        return progress

    def _signal_all(self, sig: signal.Signals) -> None:
        for process in self._processes:
            if process.pid is not None and process.exitcode is None:
                with suppress(ProcessLookupError):
                    os.kill(process.pid, sig)

    def stop(self, reason: str) -> None:
        """Every worker starts no new turn; turns in flight finish and are recorded."""
        if self.progress.stopped_by is None:
            self.progress.stopped_by = reason
        self._signal_all(signal.SIGTERM)

    def abort(self) -> None:
        """Every worker drops its turns in flight (a second signal to each)."""
        self._signal_all(signal.SIGTERM)


def _result(process: multiprocessing.process.BaseProcess, pipe: Any) -> dict[str, Any]:
    """What a worker sent back, or a fatal error naming how it died."""
    try:
        part = pipe.recv()
    except EOFError:
        part = None
    process.join()
    if part is None:
        return {"fatal_error": f"run.workers: {process.name} exited with code {process.exitcode}"}
    return part


def _worker_main(
    work: ShardWork, config_json: str, run_dir: str, index: int, workers: int, pipe: Any
) -> None:
    """Entry point of a worker process: run one shard, send back its counters."""
    os.setpgrp()  # out of the terminal's process group: signals come from the parent only
    try:
        config = RunConfig.model_validate_json(config_json)
        progress, run_s = run_async(work(config, Path(run_dir), index, workers))
        pipe.send({**dataclasses.asdict(progress), "cpu_s": time.process_time(), "run_s": run_s})
    except BaseException as exc:
        pipe.send({"fatal_error": f"run.workers: worker {index}: {type(exc).__name__}: {exc}"})
    finally:
        pipe.close()
