"""Sweeps on a real Ray cluster: ``lhe -m hydra/launcher=ray`` against a local head node."""

from __future__ import annotations

import pandas as pd
import pytest

from .clusters import (  # noqa: F401 (fixtures)
    SWEEP,
    basic_sweep_fixture,
    lhe,
    ray_head_fixture,
    sweep_records,
)

pytestmark = pytest.mark.slow


def test_a_ray_sweep_runs_each_job_as_a_task_with_the_basic_launchers_records(
    ray_head, basic_sweep, tmp_path
):
    lhe(
        "-m",
        "hydra/launcher=ray",
        f"hydra.launcher.ray.init.address={ray_head.address}",
        *SWEEP,
        f"hydra.sweep.dir={tmp_path}",
        env=ray_head.env,
    )

    assert sweep_records(tmp_path) == sweep_records(basic_sweep)
    assert len(sweep_records(tmp_path)) == 2
    table = pd.read_csv(tmp_path / "report" / "sweep.csv")
    assert sorted(table["k"]) == [1, 3] and set(table["status"]) == {"complete"}
    # Each job ran in a worker of this head (not in a Ray the driver started for itself):
    # the head's worker logs hold each job's output, which names its run directory.
    worker_logs = "".join(
        path.read_text(errors="replace")
        for path in ray_head.temp_dir.glob("session_*/logs/worker-*.out")
    )
    for run in sweep_records(tmp_path):
        assert str(tmp_path / run / "summary.json") in worker_logs
