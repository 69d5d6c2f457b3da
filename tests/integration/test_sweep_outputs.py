"""A priced sweep read back: sweep.parquet and sweep.md, the Pareto table, ``lhe-report`` on
the folder of runs, and ``lhe-summarize --s`` on one of them."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from testing.lhe_process import run_lhe
from testing.oracles import first_below

pytestmark = pytest.mark.slow


def command(name):
    """The README's console script, from the environment running the tests."""
    return str(Path(sys.executable).parent / name)


def frontier_by_hand(rows):
    """Runs that no other run beats: cheaper-or-equal with a horizon at least as long."""
    kept = []
    for run, cost, steps in rows:
        beaten = any((c <= cost and h >= steps) and (c, h) != (cost, steps) for _, c, h in rows)
        if not beaten:
            kept.append(run)
    return sorted(kept)


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    code, stderr = run_lhe(
        [
            "-m", "model=simulated",
            "model.p=0.8,0.95", "+model.price.input=1,20", "+model.price.output=2",
            "task.samples=30", "task.turns=12", "metrics.bootstrap=50", "run.progress=false",
            f"hydra.sweep.dir={root}",
        ],
        root.with_name(f"{root.name}.stderr"),
    )  # fmt: skip
    assert code == 0, stderr[-2000:]
    return root


def summaries(root):
    return {p.parent.name: json.loads(p.read_text()) for p in root.glob("*/summary.json")}


def test_sweep_parquet_and_markdown_hold_every_run(sweep_dir):
    runs = summaries(sweep_dir)
    assert len(runs) == 4
    table = pd.read_parquet(sweep_dir / "report" / "sweep.parquet").set_index("run")
    assert sorted(table.index) == sorted(runs)
    markdown = (sweep_dir / "report" / "sweep.md").read_text()
    for run, summary in runs.items():
        assert table.loc[run, "horizon_steps"] == pytest.approx(summary["horizon"]["steps"])
        assert table.loc[run, "cost_usd"] == pytest.approx(summary["economics"]["cost_usd"])
        extrapolated = summary["horizon"]["logistic_extrapolated"]
        assert table.loc[run, "logistic_extrapolated"] == extrapolated
        row = next(line for line in markdown.splitlines() if f"| {run} " in line)
        assert f"{summary['horizon']['steps']:.3f}" in row
    # p = 0.95 crosses 0.5 near 13.5 steps, past the 12 run; p = 0.8 near 3
    assert sorted(table["logistic_extrapolated"]) == [False, False, True, True]
    assert pd.read_csv(sweep_dir / "report" / "sweep.csv").shape[0] == 4


def test_pareto_table_is_the_frontier_of_horizon_against_cost(sweep_dir):
    rows = [
        (run, s["economics"]["cost_usd"], s["horizon"]["steps"])
        for run, s in summaries(sweep_dir).items()
    ]
    expected = frontier_by_hand(rows)
    assert 1 <= len(expected) < 4  # the expensive price of the same model never pays off
    pareto = (sweep_dir / "report" / "pareto.md").read_text()
    listed = sorted(run for run, _, _ in rows if f"| {run} " in pareto)
    assert listed == expected


def test_lhe_report_rebuilds_the_sweep_report_from_the_folder(sweep_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(sweep_dir, copy)
    before = pd.read_parquet(copy / "report" / "sweep.parquet")
    shutil.rmtree(copy / "report")
    result = subprocess.run(
        [command("lhe-report"), str(copy)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    after = pd.read_parquet(copy / "report" / "sweep.parquet")
    pd.testing.assert_frame_equal(after, before)
    assert (copy / "report" / "index.html").is_file() and (copy / "report" / "pareto.md").is_file()


def test_lhe_summarize_with_another_s_reads_the_horizon_off_the_same_curve(sweep_dir, tmp_path):
    run = sorted(summaries(sweep_dir))[0]
    copy = tmp_path / "run"
    shutil.copytree(sweep_dir / run, copy)
    original = json.loads((copy / "summary.json").read_text())
    result = subprocess.run(
        [command("lhe-summarize"), str(copy), "--s", "0.8"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((copy / "summary.json").read_text())
    assert summary["horizon"]["s"] == 0.8
    assert summary["task_accuracy"] == original["task_accuracy"]  # same records, same curve
    expected = first_below(original["task_accuracy"], 0.8, k=original["k"])
    assert summary["horizon"]["steps"] == pytest.approx(expected)
    assert summary["horizon"]["steps"] < original["horizon"]["steps"]
