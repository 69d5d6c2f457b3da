"""``lhe-compare``: paired comparisons of runs on one task set."""

import asyncio
import contextlib
import io
import json
import subprocess

import pytest

from harness.analysis.compare import CompareError, compare_runs, load_run
from harness.cli import compose_config
from harness.pipeline import execute


def run(tmp_path_factory, name, *overrides):
    run_dir = tmp_path_factory.mktemp(name)
    config = compose_config(
        [
            "model=simulated",
            "task.turns=40",
            "task.samples=300",
            "stop.after_failure=true",  # the horizon does not need turns after a failure
            "run.progress=false",
            "metrics.bootstrap=0",
            *overrides,
        ]
    )
    with contextlib.redirect_stdout(io.StringIO()):
        asyncio.run(execute(config, run_dir))
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return {
        "p95": run(tmp_path_factory, "p95", "model.p=0.95"),
        "p97": run(tmp_path_factory, "p97", "model.p=0.97"),
        "k2": run(tmp_path_factory, "k2", "model.p=0.95", "task.k=2", "task.turns=5"),
    }


def test_a_better_model_on_the_same_task_set_has_a_longer_horizon(runs):
    result = compare_runs([load_run(runs["p95"]), load_run(runs["p97"])], resamples=1000)
    assert result["paired"]
    (row,) = result["comparisons"]
    low, high = row["h_difference"]["ci95"]
    assert 0 < low < row["h_difference"]["estimate"] < high
    assert row["h_ratio"]["ci95"][0] > 1 and row["p_value"] < 0.01


def test_the_paired_interval_is_narrower_than_the_unpaired_one(runs):
    loaded = [load_run(runs["p95"]), load_run(runs["p97"])]
    paired = compare_runs(loaded, resamples=1000)["comparisons"][0]["h_difference"]["ci95"]
    unpaired = compare_runs(loaded, resamples=1000, paired=False)
    assert not unpaired["paired"] and unpaired["pairing"].startswith("unpaired")
    lo, hi = unpaired["comparisons"][0]["h_difference"]["ci95"]
    assert paired[1] - paired[0] < hi - lo


def test_runs_with_different_k_are_refused_naming_the_field(runs):
    with pytest.raises(CompareError, match=r"^k: runs differ"):
        compare_runs([load_run(runs["p95"]), load_run(runs["k2"])])


def test_the_command_prints_a_table_and_writes_comparison_json(runs, tmp_path):
    result = subprocess.run(
        [
            "lhe-compare",
            str(runs["p97"]),
            str(runs["p95"]),
            "--baseline",
            str(runs["p95"]),
            "--bootstrap",
            "200",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    written = json.loads((tmp_path / "comparison.json").read_text())
    assert written["comparisons"][0]["baseline"] == str(runs["p95"])
    assert "paired" in result.stdout and "simulated-p0.97" in result.stdout
    refused = subprocess.run(
        ["lhe-compare", str(runs["p95"]), str(runs["k2"])], capture_output=True, text=True
    )
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"lhe-compare: error: k: runs differ ({runs['p95']}: 1, {runs['k2']}: 2)"
    ]


def test_the_sweep_report_compares_every_run_with_the_baseline(runs, tmp_path):
    import shutil

    from harness.report.sweep_page import write_sweep_report

    for name in ("p95", "p97", "k2"):
        shutil.copytree(runs[name], tmp_path / name)
    write_sweep_report(tmp_path)
    written = json.loads((tmp_path / "report" / "comparison.json").read_text())
    assert written["paired"]
    assert [row["run"] for row in written["comparisons"]] == [str(tmp_path / "p97")]
    assert any("k or metrics.s differs" in note for note in written["left_out"])
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Horizon against the baseline (paired" in page
