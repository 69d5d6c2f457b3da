"""Figures across the runs of a sweep, chosen by what the sweep varied.

Each figure compares runs on one axis: curves overlaid (task accuracy against length, turn
accuracy against turn) or one number per run against the swept value (horizon against K,
turn-T accuracy against the injected error rate, ...). Runs are labelled by the configuration
fields that differ between them, so a legend never repeats what all runs share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator, ScalarFormatter

from harness.analysis.run_summary import HorizonSummary, RunSummary
from harness.economics.costs import pareto_frontier
from harness.report.run_figures import (
    DPI,
    FIGURE_SIZE,
    HorizonMark,
    literal,
    plot_task_accuracy,
    plot_turn_accuracy,
    summary_series,
)

VARYING_FIELDS = (
    "model",
    "mode",
    "k",
    "history",
    "rate",
    "window",
    "strategy",
    "target_turn",
)
"""Config columns of the sweep table that can tell runs apart in a legend."""


@dataclass(frozen=True, eq=False)
class PointSeries:
    """One line of points with optional 95% error bars (one point per run)."""

    label: str
    x: np.ndarray
    y: np.ndarray
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None


def run_labels(table: pd.DataFrame) -> list[str]:
    """``field=value`` for every field that varies across the table's rows."""
    varying = [c for c in VARYING_FIELDS if c in table and table[c].astype(str).nunique() > 1]
    if not varying:
        return [str(model) for model in table["model"]]
    return [
        ", ".join(f"{c}={row[c]}" if c != "model" else str(row[c]) for c in varying)
        for _, row in table.iterrows()
    ]


def plot_points(
    ax: Axes, series: Sequence[PointSeries], *, xlabel: str, ylabel: str, title: str
) -> None:
    """Lines of points with error bars.

    Categorical x (strings, e.g. model names) gets points only: a line between two models
    would suggest something in between. Integer x (K, votes) gets integer ticks, on a log2
    axis when it spans a factor of 8 or more (K from 1 to 120).
    """
    numeric = all(np.issubdtype(np.asarray(s.x).dtype, np.number) for s in series)
    for line in series:
        yerr = None
        if line.lo is not None and line.hi is not None:
            lo = np.where(np.isfinite(line.lo), line.y - line.lo, 0.0)
            hi = np.where(np.isfinite(line.hi), line.hi - line.y, 0.0)
            yerr = np.vstack([np.maximum(lo, 0.0), np.maximum(hi, 0.0)])
        ax.errorbar(
            line.x,
            line.y,
            yerr=yerr,
            marker="o",
            capsize=3,
            linestyle="-" if numeric else "none",
            label=literal(line.label),
        )
    if not numeric:
        ax.margins(x=0.2)  # keep the first and last category off the frame
    elif series:
        values = np.concatenate([np.asarray(s.x, dtype=np.float64) for s in series])
        if values.size and np.all(values == np.round(values)) and values.min() > 0:
            if values.max() / values.min() >= 8:
                ax.set_xscale("log", base=2)
            ax.set_xticks(np.unique(values))
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(literal(title))
    ax.grid(True, alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    if any(s.label for s in series):
        ax.legend(fontsize="small")


def _figure() -> tuple[Figure, Axes]:
    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")
    return figure, figure.add_subplot()


def _series_by_model(
    table: pd.DataFrame, x: str, y: str, lo: str | None = None, hi: str | None = None
) -> list[PointSeries]:
    def column(group: pd.DataFrame, name: str | None) -> np.ndarray | None:
        return None if name is None else group[name].to_numpy(dtype=np.float64)

    return [
        PointSeries(
            label=str(model),
            x=group[x].to_numpy(),
            y=column(group, y),
            lo=column(group, lo),
            hi=column(group, hi),
        )
        for model, group in table.sort_values(x).groupby("model", sort=True)
    ]


def _horizon(summary: RunSummary) -> HorizonSummary:
    """The horizon of a run the sweep table lists as having one."""
    if summary.horizon is None:
        raise ValueError(f"{summary.model}: this run has no horizon (rewritten history)")
    return summary.horizon


def sweep_figures(
    table: pd.DataFrame, summaries: dict[str, RunSummary], out_dir: Path
) -> list[Path]:
    """Write every figure that fits the sweep; returns their paths.

    ``summaries`` maps the table's ``run`` column to that run's summary.
    """
    written: list[Path] = []

    def save(figure: Figure, name: str) -> None:
        path = out_dir / name
        figure.savefig(path, format="png")
        written.append(path)

    own = table[table["horizon_steps"].notna()]
    labels = dict(zip(table["run"], run_labels(table), strict=True))
    if len(own) > 1:
        figure, ax = _figure()
        # One colour per run, shared by its curve and its horizon mark.
        colors = {run: f"C{i % 10}" for i, run in enumerate(own["run"])}
        plot_task_accuracy(
            ax,
            [
                summary_series(
                    summaries[run],
                    "task_accuracy",
                    label=labels[run],
                    per_step=True,
                    color=colors[run],
                )
                for run in own["run"]
            ],
            s=float(_horizon(summaries[own["run"].iloc[0]]).s),
            horizons=[
                HorizonMark(
                    label=labels[run],
                    steps=float(_horizon(summaries[run]).steps or 0.0),
                    censored=_horizon(summaries[run]).censored,
                    color=colors[run],
                )
                for run in own["run"]
            ],
            predictions=[],
            title="Task accuracy vs task length",
            legend_title="",
        )
        save(figure, "task_accuracy_overlay.png")
    for x, name, xlabel, title in (
        ("k", "horizon_vs_k.png", "turn complexity K (keys per turn)", "Horizon vs K"),
        ("votes", "horizon_vs_votes.png", "samples per turn (majority vote)", "Horizon vs votes"),
    ):
        # A race's single request per vote is not "votes=1": only voting runs share the axis.
        runs = own if x != "votes" else own[~own["strategy"].str.startswith("ahead_by_k")]
        if runs[x].nunique() > 1:
            figure, ax = _figure()
            plot_points(
                ax,
                _series_by_model(runs, x, "horizon_steps", "horizon_lo", "horizon_hi"),
                xlabel=xlabel,
                ylabel="horizon H_s (steps), 95% CI",
                title=title,
            )
            save(figure, name)
    if own["model"].nunique() > 1:
        figure, ax = _figure()
        best = own.loc[own.groupby("model", sort=True)["horizon_steps"].idxmax()]
        plot_points(
            ax,
            [
                PointSeries(
                    label="",
                    x=best["model"].astype(str).to_numpy(),
                    y=best["horizon_steps"].to_numpy(float),
                    lo=best["horizon_lo"].to_numpy(float),
                    hi=best["horizon_hi"].to_numpy(float),
                )
            ],
            xlabel="model",
            ylabel="horizon H_s (steps), best run, 95% CI",
            title="Horizon vs model",
        )
        save(figure, "horizon_vs_model.png")
    injected = table[table["history"].isin(["injected", "healed"])]
    if injected["rate"].nunique() > 1:
        figure, ax = _figure()
        plot_points(
            ax,
            _series_by_model(
                injected, "rate", "target_turn_accuracy", "target_turn_lo", "target_turn_hi"
            ),
            xlabel="induced error rate in the history",
            ylabel="turn accuracy at the target turn",
            title=f"Turn-{int(injected['target_turn'].max())} accuracy vs induced error rate",
        )
        ax.set_ylim(0.0, 1.0)
        save(figure, "self_conditioning.png")
    runs = list(table[(table["turns"] > 1) & (table["filled_turns"] == 0)]["run"])
    if len(runs) > 1:
        figure, ax = _figure()
        plot_turn_accuracy(
            ax,
            [summary_series(summaries[run], "turn_accuracy", label=labels[run]) for run in runs],
            title="Turn accuracy per turn",
            legend_title="",
        )
        save(figure, "turn_accuracy_overlay.png")
    priced = own[own["cost_usd"].notna()]
    if len(priced) > 1:
        frontier = pareto_frontier(priced)
        figure, ax = _figure()
        for model, group in priced.groupby("model", sort=True):
            ax.scatter(group["cost_usd"], group["horizon_steps"], label=literal(str(model)))
        ax.plot(
            frontier["cost_usd"],
            frontier["horizon_steps"],
            color="black",
            linewidth=1,
            drawstyle="steps-post",
            label="Pareto frontier",
        )
        ax.set_xlabel("cost of the run (USD)")
        ax.set_ylabel("horizon H_s (steps)")
        ax.set_title("Horizon vs cost")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        save(figure, "pareto.png")
    single = table[(table["experiment"] == "single_turn") & (table["turns"] == 1)]
    if single["k"].nunique() > 1:
        figure, ax = _figure()
        plot_points(
            ax,
            _series_by_model(single, "k", "final_index_accuracy"),
            xlabel="task length L (keys in one message)",
            ylabel="accuracy",
            title="Single-turn accuracy vs length",
        )
        ax.set_xscale("log", base=2)
        ax.set_ylim(0.0, 1.0)
        save(figure, "single_turn.png")
    fixed = table[table["experiment"] == "turn_complexity"]
    if fixed["k"].nunique() > 1:
        figure, ax = _figure()
        plot_points(
            ax,
            _series_by_model(fixed, "k", "final_task_accuracy"),
            xlabel="turn complexity K (same total steps)",
            ylabel="task accuracy after all steps",
            title="Task accuracy vs turn complexity at a fixed length",
        )
        ax.set_ylim(0.0, 1.0)
        save(figure, "turn_complexity.png")
    return written
