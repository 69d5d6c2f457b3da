"""stop.when_decided decides on the summary's own estimator, so it gives the same horizon."""

import pytest

from harness.cli import compose_config
from harness.pipeline import execute

COMMON = [
    "model=simulated",
    "model.p=0.9",
    "task.samples=1500",
    "task.turns=40",
    "run.concurrency=16",
    "run.progress=false",
    "metrics.bootstrap=400",
    "stop.after_failure=true",
]


@pytest.mark.slow
async def test_the_adaptive_horizon_equals_the_full_runs_within_its_interval(tmp_path):
    full = await execute(compose_config(COMMON), tmp_path / "full")
    adaptive = await execute(
        compose_config(
            [
                *COMMON,
                "stop.when_decided=true",
                "stop.horizon_precision=0.15",
                "stop.min_episodes=100",
            ]
        ),
        tmp_path / "adaptive",
    )
    assert adaptive.stopped_by == "stop.when_decided"
    assert adaptive.length_cap is not None and adaptive.length_cap < 40
    low, high = full.horizon.ci95
    assert abs(adaptive.horizon.steps - full.horizon.steps) <= high - low
    assert not adaptive.horizon.censored
