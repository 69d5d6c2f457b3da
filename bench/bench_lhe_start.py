"""Wall time of short ``lhe`` runs: a fresh interpreter each vs forked from a preloaded server.

The tests that start many short-lived ``lhe`` processes (SIGKILL trials, resumes, sweeps)
start them with ``testing.lhe_process``; this measures what that saves per process. Each
round starts the same tiny simulated run (1 episode x 2 turns) once each way, alternating, so
both sides see the same load. The first forked start also starts the server (one import of
the command); it is measured apart and left out of the per-run figures.

    python bench/bench_lhe_start.py
    python bench/bench_lhe_start.py --rounds 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from testing.lhe_process import run_lhe

RUN = ["model=simulated", "task.samples=1", "task.turns=2", "run.progress=false"]
RUN += ["metrics.bootstrap=0", "cache.enabled=off"]


def fresh(run_dir: Path) -> float:
    start = time.perf_counter()
    command = [sys.executable, "-m", "harness.cli", *RUN, f"hydra.run.dir={run_dir}"]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    return time.perf_counter() - start


def forked(run_dir: Path) -> float:
    start = time.perf_counter()
    code, stderr = run_lhe([*RUN, f"hydra.run.dir={run_dir}"], run_dir.with_suffix(".stderr"))
    assert code == 0, stderr
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        first = forked(root / "warm")
        times: dict[str, list[float]] = {"fresh": [], "forked": []}
        for n in range(args.rounds):
            times["fresh"].append(fresh(root / f"fresh{n}"))
            times["forked"].append(forked(root / f"forked{n}"))
    fresh_s, forked_s = (statistics.median(times[name]) for name in ("fresh", "forked"))
    print(f"load average {os.getloadavg()[0]:.2f}, {args.rounds} rounds")
    print(f"first forked start (server imports the command): {first:.2f} s")
    print(f"median per run: fresh interpreter {fresh_s:.2f} s, forked {forked_s:.2f} s")
    print(f"ratio fresh / forked: {fresh_s / forked_s:.1f}x")


if __name__ == "__main__":
    main()
