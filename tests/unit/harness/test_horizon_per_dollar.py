"""The sweep report's horizon-per-dollar table."""

import pandas as pd

from harness.report.horizon_per_dollar import (
    horizon_per_dollar_table,
    plot_horizon_per_dollar,
    wanted,
)


def runs(**columns):
    base = {
        "run": ["a", "b", "c", "d", "e"],
        "experiment": ["strategies"] * 5,
        "model": ["m1", "m1", "m1", "m2", "m2"],
        "strategy": ["single", "majority n=3", "ahead_by_k k=3", "single", "ahead_by_k k=3"],
        "horizon_steps": [6.0, 20.0, 400.0, 30.0, None],
        "horizon_lo": [4.0, 15.0, 400.0, 25.0, None],
        "horizon_hi": [8.0, 26.0, 400.0, 36.0, None],
        "horizon_censored": [False, False, True, False, None],
        "samples_per_turn": [1.0, 3.0, 3.7, 1.0, 3.5],
        "red_flag_rate": [0.0] * 5,
        "tokens_per_step": [100.0, 300.0, 380.0, 90.0, 350.0],
        "usd_per_step": [1e-5, 3e-5, 3.8e-5, 5e-5, 1e-4],
        "horizon_steps_per_usd": [1.0] * 5,
    }
    base.update(columns)
    return pd.DataFrame(base)


def test_frontier_across_models_and_strategies_in_dollars_when_every_run_is_priced():
    table = horizon_per_dollar_table(runs())
    assert list(table["run"]) == ["a", "b", "c", "d"]  # no horizon, no row; cheapest first
    # d (m2 single) is dearer per step than b and shorter than c: dominated by c.
    assert dict(zip(table["run"], table["pareto"], strict=True)) == {
        "a": True, "b": True, "c": True, "d": False,
    }  # fmt: skip


def test_tokens_per_step_are_the_axis_when_a_price_is_missing():
    table = horizon_per_dollar_table(runs(usd_per_step=[None, 3e-5, 3.8e-5, 5e-5, 1e-4]))
    assert list(table["run"]) == ["d", "a", "b", "c"]
    assert dict(zip(table["run"], table["pareto"], strict=True)) == {
        "d": True, "a": False, "b": False, "c": True,
    }  # fmt: skip


def test_only_sweeps_that_compare_strategies_get_the_table(tmp_path):
    assert wanted(runs())
    one = runs(strategy=["single"] * 5, experiment=["horizon"] * 5)
    assert not wanted(one)
    path = plot_horizon_per_dollar(horizon_per_dollar_table(runs()), tmp_path / "f.png")
    assert path.stat().st_size > 10_000
