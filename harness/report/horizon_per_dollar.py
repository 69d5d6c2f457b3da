"""Horizon per dollar: what each (model, strategy) buys in horizon for what it pays per step.

A voting strategy multiplies the samples of every step, so its horizon must be read against
its cost per step, not alone. The table puts H_s with its interval beside the samples, tokens
and dollars per step of every run, and marks the Pareto frontier across models and
strategies: the runs that no other run beats on both a longer horizon and a lower cost per
step. Dollars are used when every run has a price, tokens otherwise (local models have none).
A censored horizon (never crossed within the run) is a lower bound and is shown as one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from harness.economics.costs import pareto_frontier
from harness.report.run_figures import DPI, FIGURE_SIZE

TABLE_COLUMNS = [
    "run",
    "model",
    "strategy",
    "horizon_steps",
    "horizon_lo",
    "horizon_hi",
    "horizon_censored",
    "samples_per_turn",
    "red_flag_rate",
    "tokens_per_step",
    "usd_per_step",
    "horizon_steps_per_usd",
    "pareto",
]
FIGURE_NAME = "horizon_per_dollar.png"


def wanted(table: pd.DataFrame) -> bool:
    """Whether a sweep compares strategies (more than one, or the ``strategies`` preset)."""
    if "strategy" not in table:
        return False
    return table["strategy"].nunique() > 1 or bool((table["experiment"] == "strategies").any())


def cost_axis(table: pd.DataFrame) -> str:
    """``usd_per_step`` when every run with a horizon has a price, else ``tokens_per_step``."""
    dollars = pd.to_numeric(table["usd_per_step"], errors="coerce")
    return "usd_per_step" if len(table) and bool(dollars.notna().all()) else "tokens_per_step"


def horizon_per_dollar_table(table: pd.DataFrame) -> pd.DataFrame:
    """The runs with a horizon, cheapest per step first, with their frontier membership."""
    runs = table[table["horizon_steps"].notna()].copy()
    x = cost_axis(runs)
    frontier = pareto_frontier(runs, x=x, y="horizon_steps")
    runs["pareto"] = runs.index.isin(frontier.index)
    runs = runs.sort_values([x, "horizon_steps"], ascending=[True, False], kind="stable")
    return runs[[c for c in TABLE_COLUMNS if c in runs]].reset_index(drop=True)


def plot_horizon_per_dollar(rows: pd.DataFrame, path: Path) -> Path:
    """H_s with its 95% interval against cost per step; the frontier as a line.

    Censored horizons are open triangles pointing up (the true horizon is longer).
    """
    x_name = cost_axis(rows)
    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")
    ax = figure.add_subplot()
    x = pd.to_numeric(rows[x_name], errors="coerce").to_numpy(float)
    y = rows["horizon_steps"].to_numpy(float)
    lo = pd.to_numeric(rows["horizon_lo"], errors="coerce").to_numpy(float)
    hi = pd.to_numeric(rows["horizon_hi"], errors="coerce").to_numpy(float)
    censored = rows["horizon_censored"].fillna(False).to_numpy(bool)
    for i, model in enumerate(sorted(rows["model"].astype(str).unique())):
        mine = (rows["model"].astype(str) == model).to_numpy()
        for flag, marker in ((False, "o"), (True, "^")):
            pick = mine & (censored == flag)
            if not pick.any():
                continue
            yerr = np.vstack(
                [
                    np.where(np.isfinite(lo[pick]), np.maximum(y[pick] - lo[pick], 0), 0),
                    np.where(np.isfinite(hi[pick]), np.maximum(hi[pick] - y[pick], 0), 0),
                ]
            )
            ax.errorbar(
                x[pick],
                y[pick],
                yerr=yerr,
                fmt=marker,
                color=f"C{i % 10}",
                mfc="none" if flag else f"C{i % 10}",
                capsize=3,
                label=model + (" (censored: lower bound)" if flag else ""),
            )
    for xi, yi, text in zip(x, y, rows["strategy"].astype(str), strict=True):
        ax.annotate(text, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize="x-small")
    front = rows[rows["pareto"]].sort_values(x_name)
    if len(front) > 1:
        ax.plot(
            pd.to_numeric(front[x_name]).to_numpy(float),
            front["horizon_steps"].to_numpy(float),
            color="grey",
            linestyle="--",
            linewidth=1,
            label="Pareto frontier",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("dollars per step" if x_name == "usd_per_step" else "tokens per step")
    ax.set_ylabel("horizon H_s (steps), 95% CI")
    ax.set_title("Horizon per dollar: strategies and models")
    ax.legend(fontsize="small")
    figure.savefig(path, format="png")
    return path
