"""Tokens needed to measure H_0.5: adaptive stopping vs a full fixed-length run.

With the simulated executor (known p, so the true horizon is ln 0.5 / ln p), each case runs
the same 400 episodes twice: once to full length, once with ``stop.after_failure`` and
``stop.when_decided`` (episodes end at their first failure, and at the length where task
accuracy is surely below s). Prints tokens of both, their ratio and both horizon estimates.

    python bench/bench_adaptive_stopping.py
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import tempfile
from pathlib import Path

from harness.cli import compose_config
from harness.pipeline import execute

CASES = [(0.95, 60), (0.95, 120), (0.99, 150), (0.99, 300)]
SAMPLES = 400


async def measure(p: float, turns: int, adaptive: bool, out: Path) -> tuple[int, float]:
    overrides = [
        "model=simulated",
        f"model.p={p}",
        f"task.turns={turns}",
        f"task.samples={SAMPLES}",
        "run.concurrency=16",
        "run.progress=false",
        "metrics.bootstrap=200",
    ]
    if adaptive:
        overrides += ["stop.after_failure=true", "stop.when_decided=true"]
    with contextlib.redirect_stdout(io.StringIO()):
        summary = await execute(compose_config(overrides), out)
    return summary.tokens_spent.total, summary.horizon.steps


async def main() -> None:
    print(
        f"{'p':>5} {'turns':>6} {'true H':>7} {'H full':>7} {'H adapt':>8} "
        f"{'tokens full':>12} {'tokens adapt':>13} {'ratio':>6}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for p, turns in CASES:
            full_tokens, full_h = await measure(p, turns, False, Path(tmp) / f"f{p}{turns}")
            adapt_tokens, adapt_h = await measure(p, turns, True, Path(tmp) / f"a{p}{turns}")
            true_h = math.log(0.5) / math.log(p)
            print(
                f"{p:>5} {turns:>6} {true_h:>7.1f} {full_h:>7.1f} {adapt_h:>8.1f} "
                f"{full_tokens:>12,} {adapt_tokens:>13,} {full_tokens / adapt_tokens:>5.1f}x"
            )


if __name__ == "__main__":
    asyncio.run(main())
