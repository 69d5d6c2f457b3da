"""Throughput against an endpoint that rate-limits by requests in flight.

The fake server answers 429 with ``Retry-After: 1`` at once whenever more than M = 16 chat
requests are in flight; accepted requests take 50 ms. The real pipeline (``compose_config``
+ ``execute``, ``model=openai_compatible``) runs the same episodes three times, each against
a fresh server:

* ``fixed 16``: ``run.concurrency=16``, the ideal (never over the limit);
* ``fixed 256``: today's failure mode (every episode in flight; the rejected requests wait
  out their Retry-After one by one and come back in a crowd);
* ``auto``: ``run.concurrency=auto`` (AIMD per endpoint, a Retry-After pauses the endpoint).

Throughput is turns per second of ``Runner.run`` (a turn whose retries ran out is a provider
error, not scored: the ``scored`` column); the 429 share is the server's
rejections over every chat request it received. Target: ``auto`` at least 0.85 of the ideal's
throughput with at most 5% of requests answered 429. How far slow start overshoots before the
first 429 varies from run to run, so ``fixed 16`` and ``auto`` run ``--repeats`` times,
alternately; the verdict takes the median ratio of the pairs and the line also gives the
worst. The cores are shared with other jobs (load printed), so compare the rows of one run,
not runs.

``--workers N`` runs every row with ``run.workers=N``: a fixed concurrency is split between
the workers, and under ``auto`` they share the run's one adaptive limit. Wall time is then the
longest worker's own run (their start-up excluded, as ``Runner.run`` excludes it).

    python bench/bench_rate_limits.py
    python bench/bench_rate_limits.py --episodes 200 --turns 20 --repeats 1
    python bench/bench_rate_limits.py --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

from harness.cli import compose_config
from harness.event_loop import run_async
from harness.pipeline import execute
from harness.run.runner import Runner
from harness.run.workers import ShardedRunner
from providers.concurrency import read_limit_log
from testing.fake_server import running_fake_server

M, RETRY_AFTER, LATENCY = 16, 1.0, 0.05


def run_one(concurrency: str, episodes: int, turns: int, run_dir: Path, workers: int = 1) -> dict:
    timing: dict[str, float] = {}
    runner_class = Runner if workers == 1 else ShardedRunner
    original = runner_class.run

    async def timed(self):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return await original(self)
        finally:
            own = getattr(self, "worker_run_s", None)  # the workers' runs, start-up excluded
            timing["wall"] = max(own) if own else time.perf_counter() - start

    options = {"max_in_flight": M, "retry_after": RETRY_AFTER, "latency_median": LATENCY}
    with running_fake_server(**options) as server:
        config = compose_config(
            [
                "model=openai_compatible",
                "model.name=fake-model",
                f"model.base_url={server.base_url}",
                f"task.samples={episodes}",
                f"task.turns={turns}",
                f"run.concurrency={concurrency}",
                f"run.workers={workers}",
                "run.progress=false",
                "metrics.bootstrap=0",
            ]
        )
        runner_class.run = timed  # type: ignore[method-assign]
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                summary = run_async(execute(config, run_dir))
        finally:
            runner_class.run = original  # type: ignore[method-assign]
        stats = server.stats()
    limits = [event.limit for event in read_limit_log(run_dir)]
    return {
        "wall": timing["wall"],
        "scored": summary.turns_scored,
        "requests": stats["requests"],
        "rejected": stats["faults"]["over_limit"],
        "peak": stats["max_in_flight"],
        "limits": (min(limits), max(limits), limits[-1]) if limits else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="pairs of fixed 16 and auto")
    parser.add_argument("--workers", type=int, default=1, help="run.workers of every row")
    args = parser.parse_args()
    shape = (args.episodes, args.turns)
    load = os.getloadavg()[0]
    rows: list[tuple[str, dict]] = []
    pairs: list[tuple[dict, dict]] = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(("fixed 256", run_one("256", *shape, Path(tmp) / "256", args.workers)))
        for repeat in range(args.repeats):
            ideal = run_one("16", *shape, Path(tmp) / f"16-{repeat}", args.workers)
            auto = run_one("auto", *shape, Path(tmp) / f"auto-{repeat}", args.workers)
            rows += [("fixed 16", ideal), ("auto", auto)]
            pairs.append((ideal, auto))
    turns = args.episodes * args.turns
    print(
        f"{args.episodes} episodes x {args.turns} turns; server: 429 (Retry-After: "
        f"{RETRY_AFTER:g}) beyond {M} in flight, {1000 * LATENCY:.0f} ms replies; "
        f"ideal {turns / M * LATENCY:.2f} s; run.workers={args.workers}; "
        f"load average {load:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'run.concurrency':<16} {'wall s':>7} {'turns/s':>8} {'vs fixed 16':>12} "
        f"{'scored':>7} {'requests':>9} {'429s':>6} {'429 %':>6} {'peak':>5} "
        f"{'limit min/max/last':>19}"
    )
    reference = statistics.median(ideal["wall"] for ideal, _ in pairs)
    for name, row in rows:
        share = 100 * row["rejected"] / row["requests"]
        limits = "-" if row["limits"] is None else "/".join(map(str, row["limits"]))
        print(
            f"{name:<16} {row['wall']:>7.2f} {turns / row['wall']:>8.0f} "
            f"{reference / row['wall']:>12.2f} {row['scored']:>7} {row['requests']:>9} "
            f"{row['rejected']:>6} "
            f"{share:>6.1f} {row['peak']:>5} {limits:>19}"
        )
    ratios = [ideal["wall"] / auto["wall"] for ideal, auto in pairs]
    share = max(auto["rejected"] / auto["requests"] for _, auto in pairs)
    complete = all(auto["scored"] == turns for _, auto in pairs)
    ratio = statistics.median(ratios)
    verdict = "met" if ratio >= 0.85 and share <= 0.05 and complete else "MISSED"
    print(
        f"auto / fixed 16 over {len(pairs)} pairs (each against the fixed 16 run before it): "
        f"median {ratio:.2f}, worst {min(ratios):.2f}; most 429s in one auto run "
        f"{100 * share:.1f}%"
    )
    print(f"target auto >= 0.85 of fixed 16 (median) with <= 5% 429s: {verdict}")


if __name__ == "__main__":
    main()
