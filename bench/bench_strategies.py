"""Horizon bought by each execution strategy, and the tokens it costs, on the simulated executor.

For each per-step accuracy p and each strategy (single, majority of 3 and 5, first-to-ahead-by-2
and -3) the same episodes run through the whole pipeline; printed side by side: H_0.5 (a
``>=`` lower bound when task accuracy never fell below 0.5 within the run), samples per step,
tokens per step, tokens per correct step, and the ratios of H and of tokens per step to the
single-sample run at the same p.

Two choices keep it short and the comparison clean. ``stop.after_failure`` ends an episode at
its first failure (the horizon is the same as a full run's, far cheaper). ``history.window=1``
keeps every prompt the same size: the simulated executor does not read its history (no
self-conditioning here), and with the full history a strategy that survives longer would pay
for longer prompts, mixing the horizon into the price of a step.

``--wrong-values 1`` makes every wrong sample of a turn agree (the two-outcome race of the
gambler's-ruin formula); the default draws a fresh wrong value per sample.

    python bench/bench_strategies.py                       # p in 0.8, 0.9, 0.95
    python bench/bench_strategies.py --p 0.9 --wrong-values 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.analysis.run_summary import RunSummary
from harness.cli import compose_config
from harness.pipeline import execute

STRATEGIES = {
    "single": ["strategy=single"],
    "majority n=3": ["strategy=majority_n3"],
    "majority n=5": ["strategy=majority_n5"],
    "ahead_by_k k=2": ["strategy=ahead_by_k2"],
    "ahead_by_k k=3": ["strategy=ahead_by_k3"],
}


def predicted_accuracy(p: float, name: str) -> float:
    """Per-step accuracy against one wrong answer (the two-outcome case)."""
    q = 1 - p
    if name.startswith("ahead_by_k"):
        k = int(name[-1])
        return 1 / (1 + (q / p) ** k)
    if name.startswith("majority"):
        n = int(name[-1])
        return sum(math.comb(n, j) * p**j * q ** (n - j) for j in range(n // 2 + 1, n + 1))
    return p


async def measure(p: float, strategy: list[str], args: argparse.Namespace, out: Path) -> RunSummary:
    overrides = [
        "model=simulated",
        f"model.p={p}",
        f"task.samples={args.episodes}",
        f"task.turns={args.turns}",
        "history.window=1",
        "stop.after_failure=true",
        "run.concurrency=16",
        "run.progress=false",
        "metrics.bootstrap=200",
        "cache.enabled=off",
        *strategy,
    ]
    if args.wrong_values:
        overrides.append(f"model.wrong_values={args.wrong_values}")
    with contextlib.redirect_stdout(io.StringIO()):
        return await execute(compose_config(overrides), out)


def horizon_text(summary: RunSummary) -> str:
    h = summary.horizon
    assert h is not None and h.steps is not None
    if h.censored:
        return f">= {h.steps:.0f}"
    lo, hi = h.ci95 or (math.nan, math.nan)
    return f"{h.steps:.1f} [{lo:.1f}, {hi:.1f}]"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--p", type=float, nargs="+", default=[0.8, 0.9, 0.95])
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--turns", type=int, default=500)
    parser.add_argument("--wrong-values", type=int, default=None)
    args = parser.parse_args()
    print(
        f"simulated executor, K=1, {args.episodes} episodes x up to {args.turns} turns, "
        f"wrong values: {args.wrong_values or 'fresh per sample'}"
    )
    header = (
        f"{'p':>5} {'strategy':<15} {'H_0.5 [95% CI]':>22} {'H/H1':>7} {'2-out. H':>9} "
        f"{'samples/step':>12} {'tokens/step':>11} {'x1':>5} {'tokens/correct step':>19} "
        f"{'time':>6}"
    )
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for p in args.p:
            base: dict[str, Any] | None = None
            for name, strategy in STRATEGIES.items():
                started = time.monotonic()
                summary = await measure(p, strategy, args, Path(tmp) / f"{p}-{name}")
                elapsed = time.monotonic() - started
                economics, horizon, block = summary.economics, summary.horizon, summary.strategy
                assert economics and horizon and horizon.steps and block
                per_step = economics.tokens_per_turn or math.nan  # K = 1
                base = base or {"h": horizon.steps, "tokens": per_step}
                two_outcome = math.log(0.5) / math.log(predicted_accuracy(p, name))
                h_ratio = horizon.steps / base["h"]
                print(
                    f"{p:>5} {name:<15} {horizon_text(summary):>22} "
                    f"{('>=' if horizon.censored else '') + f'{h_ratio:.1f}':>7} "
                    f"{two_outcome:>9.1f} "
                    f"{block.samples_per_step or math.nan:>12.2f} {per_step:>11.1f} "
                    f"{per_step / base['tokens']:>5.2f} "
                    f"{economics.tokens_per_correct_step or math.nan:>19.1f} {elapsed:>5.0f}s",
                    flush=True,
                )


if __name__ == "__main__":
    asyncio.run(main())
