import subprocess
import sys

import pandas as pd
import pytest

from harness.analysis.aggregate import collect, single_turn_capacity

SMALL = ["model=simulated", "task.samples=5", "task.turns=4", "metrics.bootstrap=50"]


def sweep(tmp_path, *extra):
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "-m", *SMALL, *extra, f"hydra.sweep.dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.mark.parametrize("launcher", ["basic", "joblib", "submitit_local"])
def test_a_sweep_writes_one_run_per_job_and_the_aggregate(tmp_path, launcher):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    extra = [] if launcher == "basic" else [f"hydra/launcher={launcher}"]
    sweep(tmp_path, "task.k=1,3", *extra)
    table = pd.read_csv(tmp_path / "report" / "sweep.csv")
    assert sorted(table["k"]) == [1, 3]
    assert set(table["status"]) == {"complete"}
    assert len(list(tmp_path.glob("*/summary.json"))) == 2


def test_single_turn_capacity_is_the_largest_length_solved_at_s(tmp_path):
    sweep(
        tmp_path,
        "experiment=single_turn",
        "task.k=1,2,4,8,16",
        "model.p=0.9",
        "task.samples=40",
        "task.turns=1",
    )
    table = collect(tmp_path)
    capacity = single_turn_capacity(table, s=0.5)
    # accuracy at L is about 0.9**L: >= 0.5 up to L = 6, so 4 is the largest grid point
    assert capacity["capacity_steps"].tolist() == [4]
    assert (tmp_path / "report" / "single_turn_capacity.md").exists()


def test_self_conditioning_sweep_reports_turn_t_accuracy_against_the_rate(tmp_path):
    sweep(
        tmp_path,
        "experiment=self_conditioning",
        "task.turns=12",
        "history.target_turn=12",
        "history.rate=0.0,1.0",
        "model.self_conditioning=0.5",
        "task.samples=60",
    )
    table = collect(tmp_path).sort_values("rate")
    assert table["rate"].tolist() == [0.0, 1.0]
    assert table["horizon_steps"].isna().all()  # no horizon under a rewritten history
    high, low = table["target_turn_accuracy"].tolist()
    assert high > low  # the simulated executor's self-conditioning knob shows
    report = tmp_path / "report"
    assert (report / "self_conditioning.png").exists()
    page = (report / "index.html").read_text()
    assert page.count("data:image/png;base64,") >= 1 and "SIMULATED" in page
