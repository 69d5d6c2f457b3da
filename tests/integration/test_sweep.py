import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from harness.analysis.aggregate import collect, single_turn_capacity
from harness.records.schema import read_records
from testing.lhe_process import run_lhe

pytestmark = pytest.mark.slow

SMALL = ["model=simulated", "task.samples=5", "task.turns=4", "metrics.bootstrap=50"]


def sweep(tmp_path, *extra, fresh_interpreter=False):
    """``lhe -m`` into ``tmp_path``, forked from a server that imported it once.

    ``fresh_interpreter``: a new ``python -m harness.cli`` instead, for launchers that start
    worker processes of their own (joblib's loky hangs when started from a forked child).
    """
    args = ["-m", *SMALL, *extra, f"hydra.sweep.dir={tmp_path}"]
    if fresh_interpreter:
        command = [sys.executable, "-m", "harness.cli", *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        code, stderr = result.returncode, result.stderr
    else:
        code, stderr = run_lhe(args, tmp_path.with_name(f"{tmp_path.name}.stderr"))
    assert code == 0, stderr[-2000:]


@pytest.mark.parametrize("launcher", ["basic", "joblib", "submitit_local"])
def test_a_sweep_writes_one_run_per_job_and_the_aggregate(tmp_path, launcher):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    extra = [] if launcher == "basic" else [f"hydra/launcher={launcher}"]
    sweep(tmp_path, "task.k=1,3", *extra, fresh_interpreter=launcher != "basic")
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
    # Read back from each job's own records: the largest L solved by >= half the episodes,
    # every smaller L solved too.
    solved = {}
    for run_dir in tmp_path.glob("*/turns.jsonl"):
        records = read_records(run_dir.parent)
        solved[len(records[0].keys)] = np.mean([r.answer == r.truth for r in records])
    expected = 0
    for length in sorted(solved):
        if solved[length] < 0.5:
            break
        expected = length
    assert capacity["capacity_steps"].tolist() == [expected]
    # Accuracy at L is 0.9**L: 0.66 at 4 and 0.43 at 8, so with 40 episodes the capacity is
    # 4 or (at about one seed in four) 8; P(L=4 fails) = P(Bin(40, 0.66) < 20) < 0.03.
    assert expected in (4, 8)
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
