"""Shard the episodes of one run over several processes (``run.workers=N``).

One event loop spends 0.2-0.5 ms of CPU per HTTP request (by machine), so one process tops
out at a few thousand requests a second; a GPU server answers more. With ``run.workers=N``
the parent starts N processes (forked from a fresh server process, never from the parent's
running event loop), worker
i runs episodes i, i + N, i + 2N, ... with its own event loop and connection pool (with
``run.concurrency=auto``, all of them under the run's one adaptive limit, in shared memory:
:func:`providers.concurrency.shared_limit`), and writes its records to its own
``workers/<i>/turns.jsonl``. When they are done the parent appends the shards to the run's
``turns.jsonl`` and removes them, so every later stage reads one file; a session killed
before that leaves the shards, and the next session merges them before it reads anything.

A worker outlives no session: it holds its shard's lock (:mod:`harness.records.run_lock`)
while it runs, so the next session waits for it instead of merging under it, and it watches a
pipe whose other end only the parent holds. When the parent dies without passing a signal on
(SIGKILL, the terminal closed), the pipe reads end-of-file and the worker does what the first
Ctrl-C asks: finish the turns in flight, record them, exit. A worker whose run ends in a fatal
error (a rejected API key, say) makes the parent stop the others the same way.

Each episode is still one coroutine in one process and every request's seed depends only on
(run seed, episode, turn), so the records are those of ``run.workers=1`` (file order and
timings aside). A fixed ``run.concurrency`` is split between the workers, so the run as a
whole keeps the configured number in flight; ``auto``'s range is the shared limit's.

Signals: workers leave the terminal's process group, so Ctrl-C reaches the parent only; it
passes each signal on to every worker by pid as what it means: the first as
:data:`STOP_SIGNAL` (finish the turns in flight), a second as :data:`ABORT_SIGNAL` (drop
them). Two signals, not one sent twice, because the kernel merges a signal that arrives
while the same one is still pending, and a worker must not take a quick double Ctrl-C for a
single one. A worker catches both from its first line (:class:`WorkerChannel`), so a
signal during its start-up is applied when its runner starts instead of killing it. Either
way the records on disk stay whole turns.

Progress: each worker keeps the counts of the progress line for its shard in a small
shared-memory struct (rewritten at most ten times a second, and once at its end; no message
to the parent); the parent reads the structs twice a second and draws their sum in the
one-process format.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import math
import multiprocessing
import os
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from harness.config import RunConfig
from harness.event_loop import run_async
from harness.records.run_lock import LOCK_FILE, holding
from harness.records.schema import TURNS_FILE, TurnRecord, drop_torn_tail
from harness.run.progress import REFRESH_SECONDS, EpisodeTally, ProgressCounts, ProgressLine
from harness.run.runner import Runner, RunProgress
from providers.concurrency import SharedLimit, shared_limit

SHARDS_DIR = "workers"
"""Folder of a run directory holding one sub-folder of records per worker while it runs."""
STOP_SIGNAL = signal.SIGTERM
"""Parent to worker: start no new turn, finish and record those in flight."""
ABORT_SIGNAL = signal.SIGUSR1
"""Parent to worker: drop the turns in flight (a resume asks them again)."""
FORWARDED = frozenset({STOP_SIGNAL, ABORT_SIGNAL})
PUBLISH_SECONDS = REFRESH_SECONDS / 5
"""A worker writes its progress counts at most this often (and once more when it is done)."""


_CTYPES = {"int": ctypes.c_int64, "float": ctypes.c_double, "bool": ctypes.c_bool}


class SharedCounts(ctypes.Structure):
    """One worker's :class:`ProgressCounts` in shared memory: the worker writes, the parent reads.

    A torn read across two fields only blurs one redraw; the last read comes after the
    worker exited.
    """

    _fields_ = [(f.name, _CTYPES[str(f.type)]) for f in dataclasses.fields(ProgressCounts)]


def _caught(_signum: int, _frame: object) -> None:
    """A signal's Python-level handler: the work is done by whoever reads the wakeup pipe."""


def read_counts(shared: SharedCounts) -> ProgressCounts:
    """The counts a worker last wrote."""
    return ProgressCounts(**{name: getattr(shared, name) for name, _ in shared._fields_})


class WorkerChannel:
    """A worker's side of its parent: the parent's signals in, progress counts out.

    :meth:`listen` runs before the worker does anything else. It gives both signals a
    handler, so neither can kill the worker by its default action whichever thread the
    kernel hands it to (numpy's BLAS pool has threads from import on, so blocking the
    signals in the main thread would not do), and points ``signal.set_wakeup_fd`` at a
    pipe, into which the interpreter writes each signal's number the moment it arrives.
    :meth:`attached` reads that pipe from the runner's event loop: a signal from the
    worker's start-up is applied as the runner starts, and one after the runner is done is
    left unread (nothing is in flight any more).
    """

    def __init__(
        self,
        index: int,
        workers: int,
        counts: SharedCounts,
        parent: Any = None,
        limit: SharedLimit | None = None,
    ) -> None:
        self.index = index
        self.workers = workers
        self.counts = counts
        self.limit = limit
        """The run's one adaptive limit (state and lock in shared memory), under ``auto``."""
        self.parent = parent
        """Read end of a pipe only the parent writes to (a ``Connection``): end-of-file when
        the parent has died. ``None``: not watched (a channel made in a test)."""
        self.tally = EpisodeTally()
        self._runner: Runner | None = None
        self._wakeup = -1
        self._published = -math.inf

    def listen(self) -> None:
        """Catch :data:`STOP_SIGNAL` and :data:`ABORT_SIGNAL` into a pipe (main thread only)."""
        self._wakeup, write = os.pipe()
        os.set_blocking(self._wakeup, False)
        os.set_blocking(write, False)
        signal.set_wakeup_fd(write)
        for sig in FORWARDED:
            signal.signal(sig, _caught)

    @contextmanager
    def attached(self, runner: Runner) -> Iterator[None]:
        """Route the parent's signals to ``runner`` while it runs (call in its event loop)."""
        self._runner = runner
        loop = asyncio.get_running_loop()
        loop.add_reader(self._wakeup, self._read_signals)
        if self.parent is not None:  # readable only at end-of-file: the parent never writes
            loop.add_reader(self.parent.fileno(), self._parent_gone)
        self._read_signals()  # any from start-up, applied before the first episode starts
        try:
            yield
        finally:
            loop.remove_reader(self._wakeup)
            if self.parent is not None:
                loop.remove_reader(self.parent.fileno())
            self._publish(runner.progress)

    def _parent_gone(self) -> None:
        asyncio.get_running_loop().remove_reader(self.parent.fileno())  # EOF stays readable
        self._apply(STOP_SIGNAL, reason="the parent process is gone")

    def _read_signals(self) -> None:
        try:
            numbers = os.read(self._wakeup, 512)
        except BlockingIOError:
            return
        for number in numbers:
            if number in FORWARDED:
                self._apply(signal.Signals(number))

    def _apply(self, sig: signal.Signals, reason: str | None = None) -> None:
        """Do what ``sig`` asks of the runner; ``reason``: why, when not the parent's signal."""
        runner = self._runner
        assert runner is not None  # only called while attached
        runner.stop(reason or f"signal {sig.name}")
        if sig == ABORT_SIGNAL:
            runner.abort()
        what = "dropping" if sig == ABORT_SIGNAL else "finishing"
        because = f"{reason}; " if reason else ""
        line = f"lhe: worker {self.index}: {because}{what} its turns in flight\n"
        sys.stderr.write(line)  # one write
        sys.stderr.flush()

    def on_turn(self, record: TurnRecord, progress: RunProgress) -> None:
        """The runner's ``on_turn`` hook: count the turn, publish now and then.

        At most every :data:`PUBLISH_SECONDS`: the parent redraws less often than that.
        """
        self.tally.add(record)
        now = time.monotonic()
        if now - self._published >= PUBLISH_SECONDS:
            self._published = now
            self._publish(progress)

    def _publish(self, progress: RunProgress) -> None:
        if self._runner is None:
            return
        counts = self.tally.counts(progress, self._runner.budget)
        for name, _ in self.counts._fields_:
            setattr(self.counts, name, getattr(counts, name))


ShardWork = Callable[[RunConfig, Path, WorkerChannel], Awaitable[tuple[RunProgress, float]]]
"""One worker's run: (config, run dir, its channel) -> (progress, run seconds)."""


def shard_episodes(samples: int, workers: int, index: int) -> list[int]:
    """Episodes of worker ``index``: every ``workers``-th, so all shards are alike in size."""
    return list(range(index, samples, workers))


def worker_config(config: RunConfig, workers: int) -> RunConfig:
    """The config one worker runs: a fixed in-flight count divided between the workers.

    ``auto``'s range stays whole: the workers share one limit.
    """
    run = config.run
    share = {
        "concurrency": run.concurrency
        if run.concurrency == "auto"
        else max(1, math.ceil(run.concurrency / workers)),
        "progress": False,
    }
    return config.model_copy(update={"run": run.model_copy(update=share)})


def merge_shards(run_dir: Path) -> int:
    """Append every worker's whole records to ``turns.jsonl``, then delete the shards.

    Returns the number of lines moved. Safe to repeat after a crash halfway: a shard is
    deleted only after its lines are on disk in the main file, and a shard's torn last line
    (a worker killed mid-write) is dropped first.

    Raises:
        RunDirectoryInUse: The worker of a shard is still running (its parent died; it is
            finishing its turns in flight).
    """
    shards = run_dir / SHARDS_DIR
    if not shards.is_dir():
        return 0
    moved = 0
    target = run_dir / TURNS_FILE
    drop_torn_tail(target)
    for shard in sorted(p for p in shards.iterdir() if p.is_dir()):
        with holding(shard / LOCK_FILE, busy=f"worker {shard.name} of an earlier session"):
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

    def __init__(
        self,
        config: RunConfig,
        run_dir: Path,
        work: ShardWork,
        progress_line: ProgressLine | None = None,
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        self.work = work
        """What one worker process runs (``harness.pipeline.run_shard``): passed in, so this
        module needs nothing from the pipeline that wires it."""
        self.progress_line = progress_line
        """Where the whole run's progress is drawn (``None``: not at all)."""
        self.workers = config.run.workers
        self.progress = RunProgress(episodes_total=config.task.samples)
        self._processes: list[multiprocessing.process.BaseProcess] = []
        self._counts: list[SharedCounts] = []
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
        workers = self.workers
        # The parent's end of every worker's "parent alive" pipe: never written, closed only
        # by this process's exit, which the workers then read as end-of-file.
        watched, alive = context.Pipe(duplex=False)
        limit = None
        if self.config.run.concurrency == "auto":
            limit = shared_limit(context, self.config.run.concurrency_min)
        for index in range(workers):
            receive, send = context.Pipe(duplex=False)
            counts = context.RawValue(SharedCounts)
            process = context.Process(
                target=_worker_main,
                args=(
                    self.work,
                    shard_config,
                    str(self.run_dir),
                    index,
                    workers,
                    send,
                    counts,
                    watched,
                    limit,
                ),
                name=f"lhe-worker-{index}",
            )
            process.start()
            send.close()
            self._processes.append(process)
            self._counts.append(counts)
            pipes.append(receive)
        watched.close()
        refresh = asyncio.create_task(self._refresh()) if self.progress_line else None
        try:
            waits = zip(self._processes, pipes, strict=True)
            parts = await asyncio.gather(*(self._wait(p, c) for p, c in waits))
        finally:
            if refresh is not None:
                refresh.cancel()
            alive.close()
        self.show_progress()  # the final counts: every worker has exited
        merge_shards(self.run_dir)
        self.worker_cpu = [part.get("cpu_s", 0.0) for part in parts]
        self.worker_run_s = [part.get("run_s", 0.0) for part in parts]
        progress = _combine(parts, self.progress.started, self.config.task.samples)
        if self.progress.stopped_by is not None:
            progress.stopped_by = self.progress.stopped_by
        self.progress = progress
        return progress

    async def _wait(self, process: multiprocessing.process.BaseProcess, pipe: Any) -> dict:
        """One worker's result; a fatal error in it stops the others (as one process would)."""
        part = await asyncio.to_thread(_result, process, pipe)
        if part.get("fatal_error") is not None:
            self._signal_all(STOP_SIGNAL)
        return part

    def counts(self) -> ProgressCounts:
        """The progress-line counts of the whole run: the sum of what the workers wrote."""
        return sum((read_counts(shared) for shared in self._counts), ProgressCounts())

    def show_progress(self) -> None:
        """Draw the run's progress line now, if there is one."""
        if self.progress_line is not None:
            self.progress_line.show(self.counts(), self.progress)

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            self.show_progress()

    def _signal_all(self, sig: signal.Signals) -> None:
        for process in self._processes:
            if process.pid is not None and process.exitcode is None:
                with suppress(ProcessLookupError):
                    os.kill(process.pid, sig)

    def stop(self, reason: str) -> None:
        """Every worker starts no new turn; turns in flight finish and are recorded."""
        if self.progress.stopped_by is None:
            self.progress.stopped_by = reason
        self._signal_all(STOP_SIGNAL)

    def abort(self) -> None:
        """Every worker drops its turns in flight."""
        self._signal_all(ABORT_SIGNAL)


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
    work: ShardWork,
    config_json: str,
    run_dir: str,
    index: int,
    workers: int,
    pipe: Any,
    counts: SharedCounts,
    parent: Any,
    limit: SharedLimit | None,
) -> None:
    """Entry point of a worker process: run one shard, send back its counters."""
    os.setpgrp()  # out of the terminal's process group: signals come from the parent only
    channel = WorkerChannel(index, workers, counts, parent, limit)
    channel.listen()
    try:
        config = RunConfig.model_validate_json(config_json)
        # asyncio's loop, not uvloop: uvloop points signal.set_wakeup_fd at its own socket
        # when it starts, and the channel's wakeup pipe would never hear the parent.
        progress, run_s = run_async(work(config, Path(run_dir), channel), loop="asyncio")
        part = {**dataclasses.asdict(progress), "cpu_s": time.process_time(), "run_s": run_s}
    except BaseException as exc:
        part = {"fatal_error": f"run.workers: worker {index}: {type(exc).__name__}: {exc}"}
    with suppress(OSError):  # BrokenPipeError when the parent is gone: its records are on disk
        pipe.send(part)
    pipe.close()
