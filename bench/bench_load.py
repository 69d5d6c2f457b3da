"""Load: 1,000 concurrent episodes through the real pipeline, with memory and descriptors.

1000 episodes x 5 turns against the fake server on 127.0.0.1, every reply taking 1 s, run
once with ``run.concurrency=1000`` and once with 100 for comparison. Each run is
``compose_config`` + ``execute`` (the same path as ``lhe``, summary and report included) in
a child process of its own, so its peak RSS is its own: ``ru_maxrss`` of the child, plus
the peak of a 20 ms sampler of VmRSS while ``Runner.run`` is working (the turns themselves,
without the summary's bootstrap and the report's figures). Open file descriptors are
counted in ``/proc/self/fd`` before the run (after imports), at their peak during it and
after it returned. A socket, pipe or event-loop descriptor still open afterwards is a leak;
files still open are listed by folder (matplotlib keeps the fonts of its font cache open:
six, the same after one run or ten). ``--nofile`` lowers the harness's soft open-file limit
first, to check that a common default (1024) does not turn into connection failures.

    python bench/bench_load.py                      # both rows
    python bench/bench_load.py --concurrency 1000   # one row
    python bench/bench_load.py --nofile 1024        # also under a common default fd limit
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

EPISODES, TURNS, LATENCY = 1000, 5, 1.0


@dataclass
class Row:
    """What one child run measured."""

    concurrency: int
    wall_s: float
    runner_s: float
    turns: int
    scored: int
    provider_errors: int
    retries: int
    rss_before_mb: float
    rss_runner_mb: float
    rss_peak_mb: float
    cpu_s: float
    fds_before: int
    fds_peak: int
    fds_after: int
    left_open: dict[str, int]
    server_rss_mb: float = 0.0
    server_cpu_s: float = 0.0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def fd_targets() -> dict[str, str]:
    """What every open descriptor points at (``socket:[...]``, a path, ``pipe:[...]``)."""
    targets = {}
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            targets[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return targets


def kind(target: str) -> str:
    """``socket``, ``pipe``, ``anon_inode:...`` or the folder of an open file."""
    if target.startswith("/"):
        return str(Path(target).parent)
    return target.split(":[")[0]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class Sampler:
    """Peak RSS and open descriptors, sampled every 20 ms while ``active``."""

    def __init__(self) -> None:
        self.active = False
        self.rss = 0.0
        self.fds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            if self.active:
                self.rss = max(self.rss, rss_mb())
                self.fds = max(self.fds, open_fds())

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def child(base_url: str, concurrency: int, nofile: int | None) -> Row:
    """One run in this process; imports first, so "before" counts only the run's own fds."""
    if nofile:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))
    from harness.cli import compose_config
    from harness.event_loop import run_async
    from harness.pipeline import execute
    from harness.run.runner import Runner

    config = compose_config(
        [
            "model=openai_compatible",
            "model.name=fake-model",
            f"model.base_url={base_url}",
            f"task.samples={EPISODES}",
            f"task.turns={TURNS}",
            f"run.concurrency={concurrency}",
            "run.progress=false",
            "cache.enabled=off",
        ]
    )
    timing: dict[str, float] = {}
    original = Runner.run

    with Sampler() as sampler:

        async def timed(self: Runner):  # type: ignore[no-untyped-def]
            started, cpu = time.perf_counter(), time.process_time()
            sampler.active = True
            try:
                return await original(self)
            finally:
                sampler.active = False
                timing["runner"] = time.perf_counter() - started
                timing["cpu"] = time.process_time() - cpu

        Runner.run = timed  # type: ignore[method-assign]
        gc.collect()
        before, rss_before = fd_targets(), rss_mb()
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
            started = time.perf_counter()
            summary = run_async(execute(config, Path(tmp) / "run"))
            wall = time.perf_counter() - started
        gc.collect()
        after = fd_targets()
    left_open: dict[str, int] = {}
    for fd, target in after.items():
        if before.get(fd) != target:
            left_open[kind(target)] = left_open.get(kind(target), 0) + 1
    return Row(
        concurrency=concurrency,
        wall_s=wall,
        runner_s=timing["runner"],
        turns=EPISODES * TURNS - summary.turns_unfinished,
        scored=summary.turns_scored,
        provider_errors=summary.provider_errors_total,
        retries=summary.retries,
        rss_before_mb=rss_before,
        rss_runner_mb=sampler.rss,
        rss_peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        cpu_s=timing["cpu"],
        fds_before=len(before),
        fds_peak=sampler.fds,
        fds_after=len(after),
        left_open=left_open,
    )


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of another process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(concurrency: int, nofile: int | None) -> Row:
    """A fresh server and a fresh child process for one row."""
    from testing.fake_server import running_fake_server

    with running_fake_server(latency_median=LATENCY) as server:
        command = [
            sys.executable,
            __file__,
            "--child",
            server.base_url,
            "--concurrency",
            str(concurrency),
        ]
        if nofile:
            command += ["--nofile", str(nofile)]
        server_cpu = process_cpu_s(server.pid)
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"child failed:\n{done.stderr[-3000:]}")
        row = Row(**json.loads(done.stdout.strip().splitlines()[-1]))
        row.server_rss_mb = server_peak_rss_mb(server.pid)
        row.server_cpu_s = process_cpu_s(server.pid) - server_cpu
    return row


def table(rows: list[Row]) -> str:
    header = (
        f"{'concurrency':>11} {'wall s':>7} {'runner s':>9} {'ideal s':>8} {'turns/s':>8} "
        f"{'scored':>7} {'retries':>7} {'CPU s':>6} {'server CPU s':>12} "
        f"{'RSS MB before/run/peak':>22} {'fds before/peak/after':>22} {'server MB':>9}"
    )
    lines = [header]
    for r in rows:
        ideal = TURNS * LATENCY * -(-EPISODES // r.concurrency)
        fds = f"{r.fds_before}/{r.fds_peak}/{r.fds_after}"
        rss = f"{r.rss_before_mb:.0f}/{r.rss_runner_mb:.0f}/{r.rss_peak_mb:.0f}"
        lines.append(
            f"{r.concurrency:>11} {r.wall_s:>7.1f} {r.runner_s:>9.1f} {ideal:>8.1f} "
            f"{r.turns / r.runner_s:>8.0f} {r.scored:>7} {r.retries:>7} "
            f"{r.cpu_s:>6.1f} {r.server_cpu_s:>12.1f} {rss:>22} {fds:>22} {r.server_rss_mb:>9.0f}"
        )
    return "\n".join(lines)


LEAKY_KINDS = ("socket", "pipe", "anon_inode")
"""Descriptors a finished run must not keep; an open file may be a library's cache."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", metavar="BASE_URL", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, action="append", help="default: 100 and 1000")
    parser.add_argument("--nofile", type=int, help="soft RLIMIT_NOFILE for the harness process")
    args = parser.parse_args()
    if args.child:
        row = child(args.child, args.concurrency[0], args.nofile)
        print(json.dumps(asdict(row)))
        return
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    nofile = args.nofile or limits[0]
    print(
        f"{EPISODES} episodes x {TURNS} turns, every reply {LATENCY:g} s (fake server, 127.0.0.1); "
        f"fd limit {nofile}; load average {os.getloadavg()[0]:.1f}"
    )
    rows = [measure(c, args.nofile) for c in args.concurrency or [100, 1000]]
    print(table(rows))
    print(
        "runner s, CPU s: wall and CPU time of Runner.run (the turns); ideal: turns x latency x "
        "ceil(episodes / concurrency); RSS before: after imports; run: peak VmRSS during "
        "Runner.run; peak: ru_maxrss of the whole run (summary with 1000 bootstrap resamples "
        "and report included)"
    )
    for r in rows:
        leaked = {k: n for k, n in r.left_open.items() if k.startswith(LEAKY_KINDS)}
        files = {k: n for k, n in r.left_open.items() if k not in leaked}
        verdict = f"LEAK {leaked}" if leaked else "no socket, pipe or event-loop fd left open"
        print(f"concurrency {r.concurrency}: {verdict}; files left open: {files or 'none'}")


if __name__ == "__main__":
    main()
