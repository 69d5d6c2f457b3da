import math

import pytest

from harness.cli import compose_config
from harness.pipeline import execute


@pytest.mark.parametrize(("p", "k", "seed"), [(0.9, 1, 0), (0.97, 2, 1)])
async def test_horizon_of_the_simulated_executor_matches_proposition_one(tmp_path, p, k, seed):
    """With independent errors at per-step accuracy p, H_0.5 = ln 0.5 / ln p (in steps)."""
    expected = math.log(0.5) / math.log(p)
    turns = math.ceil(4 * expected / k)
    config = compose_config(
        [
            "model=simulated",
            f"model.p={p}",
            f"model.seed={seed}",
            f"task.k={k}",
            f"task.turns={turns}",
            "task.samples=400",
            "run.concurrency=32",
            "run.progress=false",
            "metrics.bootstrap=400",
        ]
    )
    summary = await execute(config, tmp_path)
    horizon = summary.horizon
    assert not horizon.censored
    assert horizon.steps == pytest.approx(expected, rel=0.15)
    low, high = horizon.ci95
    assert low <= expected <= high
    assert summary.prop1.p_hat == pytest.approx(p, abs=0.01)
    assert summary.prop1.predicted_steps == pytest.approx(expected, rel=0.15)
    assert horizon.logistic_steps == pytest.approx(expected, rel=0.25)
