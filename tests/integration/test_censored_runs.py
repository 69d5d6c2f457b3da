"""A run whose episodes stop early: Kaplan-Meier keeps the horizon right (issue: censoring)."""

import asyncio
import contextlib
import io
import json
import shutil

import numpy as np
import pytest

from harness.cli import compose_config
from harness.commands import summarize_main
from harness.pipeline import execute
from harness.records.schema import TURNS_FILE

pytestmark = pytest.mark.slow  # the shared run: 600 episodes x 40 turns, 300 resamples

COMPLETE = ["model=simulated", "model.p=0.95", "task.turns=40", "task.samples=600"]


@pytest.fixture(scope="module")
def complete_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("complete")
    config = compose_config([*COMPLETE, "run.progress=false", "metrics.bootstrap=300"])
    with contextlib.redirect_stdout(io.StringIO()):
        summary = asyncio.run(execute(config, run_dir))
    return run_dir, summary.model_dump(mode="json")


def cut_copy(run_dir, target, keep):
    """A copy of the run keeping only the records ``keep(episode, turn)`` accepts."""
    shutil.copytree(run_dir, target)
    lines = (run_dir / TURNS_FILE).read_text().splitlines(keepends=True)
    kept = [line for line in lines if keep(**{k: json.loads(line)[k] for k in ("episode", "turn")})]
    (target / TURNS_FILE).write_text("".join(kept))
    with contextlib.redirect_stdout(io.StringIO()) as out:
        summarize_main([str(target), "--bootstrap", "300"])
    return json.loads((target / "summary.json").read_text()), out.getvalue()


def test_a_run_cut_at_turn_ten_claims_only_a_lower_bound(complete_run, tmp_path):
    run_dir, _ = complete_run
    summary, printed = cut_copy(run_dir, tmp_path / "cut", lambda episode, turn: turn < 10)
    horizon = summary["horizon"]
    assert horizon["censored"] and horizon["steps"] <= 10 and horizon["ci95"] is None
    assert summary["task_accuracy"][10:] == [None] * 30  # unknown, not 0
    assert summary["at_risk"][10:] == [0] * 30
    assert ">= 10 steps (censored" in printed


def test_random_censoring_of_60_percent_leaves_the_horizon_within_5_percent(complete_run, tmp_path):
    run_dir, complete = complete_run
    rng = np.random.default_rng(11)
    cut_at = np.where(rng.random(600) < 0.6, rng.integers(1, 40, 600), 40)
    summary, _ = cut_copy(run_dir, tmp_path / "cut", lambda episode, turn: turn < cut_at[episode])
    assert not summary["horizon"]["censored"]
    assert summary["horizon"]["steps"] == pytest.approx(complete["horizon"]["steps"], rel=0.05)


def test_the_summary_carries_thresholds_hazard_and_dynamics(complete_run):
    _, summary = complete_run
    assert [h["s"] for h in summary["horizons"]] == [0.5, 0.8, 0.9]
    assert summary["horizons"][0]["steps"] == summary["horizon"]["steps"]
    ratio = summary["horizon_ratio"]
    assert ratio["constant_hazard"] == pytest.approx(np.log(0.8) / np.log(0.5))
    assert ratio["ci95"][0] < ratio["constant_hazard"] < ratio["ci95"][1]  # p is constant
    assert summary["hazard_trend"]["verdict"] == "flat"
    hazard = np.array([np.nan if v is None else v for v in summary["hazard"]["per_step"]])
    assert np.nanmean(hazard[:20]) == pytest.approx(0.05, abs=0.01)
    assert set(summary["error_dynamics"]) >= {"length_effect", "history_effect"}
