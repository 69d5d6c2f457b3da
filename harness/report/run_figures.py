"""Figures of one run: per-turn accuracies and task accuracy against task length.

The drawing functions take plain arrays wrapped in small frozen values (:class:`CurveSeries`,
:class:`HorizonMark`, :class:`Prop1Curve`), never a run directory, so a sweep can overlay many
runs on one axes by passing several of each. Only :func:`write_run_figures` knows the files.

Figures are built on :class:`matplotlib.figure.Figure` directly, not through pyplot: nothing
is registered in pyplot's global figure list, no GUI backend is ever selected (so importing
this module leaves an interactive session's backend alone), and a figure is freed as soon as
its last reference goes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from harness.analysis.run_summary import RunSummary
from harness.analysis.statistics import nan_for_none
from harness.report.text import horizon_phrase

TURN_FIGURE = "turn_accuracy.png"
TASK_FIGURE = "task_accuracy.png"

FIGURE_SIZE = (8.0, 4.6)
"""Inches; at :data:`DPI` this is about 960 x 550 pixels, readable inline in the report."""
DPI = 120
MAX_MARKED_POINTS = 60
"""Curves with more points are drawn without markers, which would merge into a thick line."""


@dataclass(frozen=True, eq=False)
class CurveSeries:
    """One curve to draw, with an optional confidence band.

    Values may be None or NaN where nothing was scored; the line and band break there
    instead of inventing a value.
    """

    label: str
    x: np.ndarray
    y: np.ndarray
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    color: str | None = None
    linestyle: str = "-"

    def __post_init__(self) -> None:
        object.__setattr__(self, "x", nan_for_none(self.x))
        object.__setattr__(self, "y", nan_for_none(self.y))
        for name in ("lo", "hi"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, nan_for_none(value))
        for name in ("y", "lo", "hi"):
            value = getattr(self, name)
            if value is not None and value.shape != self.x.shape:
                raise ValueError(
                    f"CurveSeries {self.label!r}: {name} has {value.size} points, x has "
                    f"{self.x.size}"
                )


@dataclass(frozen=True)
class HorizonMark:
    """An observed horizon H_s: where task accuracy first fell below s."""

    label: str
    """Names the run when several are overlaid; empty for a single run."""
    steps: float
    ci95: tuple[float, float] | None = None
    censored: bool = False
    """The curve never fell below s: ``steps`` is only a lower bound (the run's length)."""
    color: str | None = None


@dataclass(frozen=True)
class Prop1Curve:
    """Proposition 1's prediction: success p_hat**L at length L if errors were independent."""

    label: str
    """Names the run when several are overlaid; empty for a single run."""
    p_hat: float
    predicted_steps: float | None
    color: str | None = None


def _draw_curves(ax: Axes, curves: Sequence[CurveSeries], *, band_alpha: float = 0.2) -> None:
    for curve in curves:
        marker = "o" if curve.x.size <= MAX_MARKED_POINTS else None
        (line,) = ax.plot(
            curve.x,
            curve.y,
            label=curve.label,
            color=curve.color,
            linestyle=curve.linestyle,
            marker=marker,
            markersize=3,
            linewidth=1.6,
            clip_on=False,  # a curve at exactly 1.0 stays whole on the top edge
        )
        if curve.lo is not None and curve.hi is not None:
            known = np.isfinite(curve.lo) & np.isfinite(curve.hi)
            if known.any():
                ax.fill_between(
                    curve.x,
                    np.where(known, curve.lo, 0.0),
                    np.where(known, curve.hi, 0.0),
                    where=known,
                    color=line.get_color(),
                    alpha=band_alpha,
                    linewidth=0,
                    label=f"{curve.label}, 95% CI",
                )


def _finish_accuracy_axes(ax: Axes, *, xlabel: str, title: str | None, legend_title: str) -> None:
    ax.set_ylim(0.0, 1.0)
    ax.set_xlim(left=0.0)
    # Open top and right edges keep a curve at accuracy 1 or a horizon at the run's last
    # length visible instead of hidden under the frame.
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (fraction of episodes)")
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    ax.legend(title=legend_title or None, fontsize="small", title_fontsize="small", loc="best")


def plot_turn_accuracy(
    ax: Axes, curves: Sequence[CurveSeries], *, title: str | None = None, legend_title: str = ""
) -> None:
    """Per-turn accuracy curves against the 1-based turn number."""
    _draw_curves(ax, curves)
    _finish_accuracy_axes(ax, xlabel="turn", title=title, legend_title=legend_title)


def horizon_label(mark: HorizonMark, s: float) -> str:
    """Legend text of an observed horizon; a censored one reads as the lower bound it is."""
    prefix = f"{mark.label}: " if mark.label else ""
    phrase = horizon_phrase(mark.steps, s=s, censored=mark.censored, ci95=mark.ci95)
    return f"{prefix}observed $H_{{{s:g}}}$ {'' if mark.censored else '= '}{phrase}"


def plot_task_accuracy(
    ax: Axes,
    curves: Sequence[CurveSeries],
    *,
    s: float,
    horizons: Sequence[HorizonMark] = (),
    predictions: Sequence[Prop1Curve] = (),
    title: str | None = None,
    legend_title: str = "",
) -> None:
    """Task accuracy against task length in steps, with observed and predicted horizons.

    The Proposition 1 curves span the plotted range from length 0 (where success is 1 by
    definition); a predicted horizon beyond that range is named in the legend, not drawn.
    """
    _draw_curves(ax, curves)
    x_max = max((float(np.nanmax(c.x)) for c in curves if c.x.size), default=1.0)
    ax.axhline(s, color="0.35", linestyle="--", linewidth=1.0, label=f"s = {s:g}")
    for mark in horizons:
        line = ax.axvline(
            mark.steps,
            color=mark.color,
            linestyle=":" if mark.censored else "-.",
            linewidth=1.4,
            label=horizon_label(mark, s),
        )
        if mark.ci95 is not None and not mark.censored:
            ax.axvspan(*mark.ci95, color=line.get_color(), alpha=0.12, linewidth=0)
    lengths = np.linspace(0.0, x_max, 400)
    for prediction in predictions:
        predicted = prediction.predicted_steps
        if predicted is None:
            where = "no finite horizon"
        elif predicted > x_max:
            where = f"H = {predicted:.1f} steps (beyond this plot)"
        else:
            where = f"H = {predicted:.1f} steps"
        prefix = f"{prediction.label}: " if prediction.label else ""
        (line,) = ax.plot(
            lengths,
            prediction.p_hat**lengths,
            color=prediction.color,
            linestyle=(0, (4, 2)),
            linewidth=1.3,
            label=rf"{prefix}Prop. 1: $\hat{{p}}^L$, $\hat{{p}}$ = {prediction.p_hat:.4f}, {where}",
        )
        if predicted is not None and predicted <= x_max:
            ax.plot([predicted, predicted], [0.0, s], color=line.get_color(), linewidth=1.0)
            ax.plot([predicted], [s], marker="D", markersize=6, color=line.get_color())
    _finish_accuracy_axes(
        ax, xlabel="task length (steps = turns × K)", title=title, legend_title=legend_title
    )
    ax.set_xlim(0.0, x_max * 1.01)


def run_description(summary: RunSummary) -> str:
    """``model, mode, K=k`` with a SIMULATED tag: the words every figure and report names."""
    text = f"{summary.model}, {summary.mode}, K={summary.k}"
    return text + " [SIMULATED]" if summary.simulated else text


def literal(text: str) -> str:
    """Text matplotlib draws as written: a ``$`` in a model label would start math mode."""
    return text.replace("$", r"\$")


def summary_series(
    summary: RunSummary,
    metric: str,
    *,
    label: str,
    per_step: bool = False,
    color: str | None = None,
    band: bool = True,
) -> CurveSeries:
    """One per-turn curve of a summary, x in turns (1-based) or, with ``per_step``, in steps."""
    values = getattr(summary, metric)
    turns = np.arange(1, len(values) + 1, dtype=np.float64)
    x = turns * summary.k if per_step else turns
    intervals = getattr(summary.ci95, metric) if band else None
    lo = hi = None
    if intervals is not None:
        lo = [pair[0] if pair else None for pair in intervals]
        hi = [pair[1] if pair else None for pair in intervals]
    return CurveSeries(label=label, x=x, y=values, lo=lo, hi=hi, color=color)


def turn_accuracy_figure(summary: RunSummary) -> Figure:
    """Turn accuracy (with its band) and index accuracy of one run."""
    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")
    ax = figure.add_subplot()
    plot_turn_accuracy(
        ax,
        [
            summary_series(summary, "turn_accuracy", label="turn accuracy", color="C0"),
            summary_series(
                summary, "index_accuracy", label="index accuracy", color="C1", band=False
            ),
        ],
        title=literal(f"Accuracy per turn: {run_description(summary)}"),
        legend_title=literal(f"{summary.model} ({summary.mode})"),
    )
    return figure


def task_accuracy_figure(summary: RunSummary) -> Figure:
    """Task accuracy against length, the observed H_s and Proposition 1's prediction."""
    h = summary.horizon
    p1 = summary.prop1
    if h is None or p1 is None:
        raise ValueError("task_accuracy_figure: a rewritten history has no task accuracy")
    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")
    ax = figure.add_subplot()
    ci = h.ci95
    plot_task_accuracy(
        ax,
        [
            summary_series(
                summary, "task_accuracy", label="task accuracy", per_step=True, color="C0"
            )
        ],
        s=h.s,
        horizons=[
            HorizonMark(
                label="",
                steps=h.steps,
                ci95=(ci[0], ci[1]) if ci else None,
                censored=h.censored,
                color="C2",
            )
        ]
        if h.steps is not None
        else [],
        predictions=(
            [
                Prop1Curve(
                    label="",
                    p_hat=p1.p_hat,
                    predicted_steps=p1.predicted_steps,
                    color="C3",
                )
            ]
            if p1.p_hat is not None
            else []
        ),
        title=literal(f"Task accuracy vs length: {run_description(summary)}"),
        legend_title=literal(f"{summary.model} ({summary.mode})"),
    )
    return figure


def write_run_figures(run_dir: Path, summary: RunSummary) -> list[Path]:
    """Write the run's figures as PNGs into ``run_dir`` and return their paths."""
    written = []
    figures = [(TURN_FIGURE, turn_accuracy_figure)]
    if summary.horizon is not None:  # no task accuracy under a rewritten history
        figures.append((TASK_FIGURE, task_accuracy_figure))
    for name, build in figures:
        path = run_dir / name
        build(summary).savefig(path, format="png")
        written.append(path)
    return written
