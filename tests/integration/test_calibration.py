import math

import pytest

from harness.cli import compose_config
from harness.pipeline import execute


@pytest.mark.slow
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
    # Not too wide either: the delta method gives sd(H) = sd(accuracy at H) / |slope of p^L|
    # = sqrt(0.25 / 400) / (0.5 |ln p|); an honest 95% interval is about 3.9 sd wide.
    delta_width = 3.92 * math.sqrt(0.25 / 400) / (0.5 * abs(math.log(p)))
    assert high - low <= 1.5 * delta_width
    assert summary.prop1.p_hat == pytest.approx(p, abs=0.01)
    assert summary.prop1.predicted_steps == pytest.approx(expected, rel=0.15)
    assert horizon.logistic_steps == pytest.approx(expected, rel=0.25)
