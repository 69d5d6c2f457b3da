"""Figures of the error taxonomy: categories by turn for a run, categories per run for a sweep.

Each category keeps one colour everywhere (the run figure, the sweep figure, the report's
table), so a reader learns it once. Both figures read only ``summary.json``'s
``error_taxonomy``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from harness.analysis.failures import CATEGORIES, EXPECTED_UPDATE, ErrorTaxonomy
from harness.analysis.run_summary import RunSummary
from harness.report.run_figures import DPI, FIGURE_SIZE, literal

CATEGORY_FIGURE = "error_categories.png"
SWEEP_CATEGORY_FIGURE = "error_categories_per_run.png"
MAX_BARS = 60
"""Longer runs are drawn in this many bins of consecutive turns."""

CATEGORY_COLORS = {
    "correct": "#2ca02c",
    "carried": "#98df8a",
    "recovered": "#17becf",
    "stale": "#7f7f7f",
    "value_only": "#d62728",
    "skipped_key": "#ff7f0e",
    "doubled_key": "#ffbb78",
    "sign_flip": "#9467bd",
    "wrong_key": "#8c564b",
    "arithmetic": "#aec7e8",
    "other": "#c7c7c7",
    "no_answer": "#e377c2",
    "bad_format": "#f7b6d2",
    "unterminated_think": "#bcbd22",
    "context_exceeded": "#393b79",
}


def _stack(
    ax: Axes, x: np.ndarray, shares: dict[str, np.ndarray], *, width: float, horizontal: bool
) -> None:
    """Stacked bars, one segment per category in rule order."""
    bottom = np.zeros(len(x))
    for name in CATEGORIES:
        if name not in shares:
            continue
        height = np.nan_to_num(shares[name])
        draw = ax.barh if horizontal else ax.bar
        offset = {"left": bottom} if horizontal else {"bottom": bottom}
        draw(x, height, width, color=CATEGORY_COLORS[name], label=name, **offset)
        bottom = bottom + height


def categories_by_turn_figure(taxonomy: ErrorTaxonomy) -> Figure | None:
    """Share of each category among the wrong turns at every turn (None: nothing wrong).

    Consecutive turns are pooled into at most :data:`MAX_BARS` bars, weighting each turn by
    its number of wrong turns; the grey line is that number.
    """
    wrong = np.asarray(taxonomy.wrong_per_turn, dtype=np.float64)
    if not wrong.sum():
        return None
    counts = {
        name: np.nan_to_num(np.array(shares, dtype=np.float64)) * wrong
        for name, shares in taxonomy.per_turn.items()
    }
    turns = wrong.size
    edges = np.unique(np.linspace(0, turns, min(turns, MAX_BARS) + 1).round().astype(int))
    starts = edges[:-1]
    pooled_wrong = np.add.reduceat(wrong, starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = {name: np.add.reduceat(c, starts) / pooled_wrong for name, c in counts.items()}
    widths = np.diff(edges)
    x = starts + 1 + (widths - 1) / 2  # 1-based turns, bar centred on its bin
    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")
    ax = figure.add_subplot()
    _stack(ax, x, shares, width=widths * 0.9, horizontal=False)
    ax.set_xlabel("turn" if widths.max() == 1 else f"turn ({int(widths.max())} turns per bar)")
    ax.set_ylabel("share of the wrong turns")
    ax.set_ylim(0.0, 1.0)
    ax.set_title("How the wrong turns were wrong, by turn")
    ax.spines[["top"]].set_visible(False)
    count_axis = ax.twinx()
    count_axis.plot(x, pooled_wrong, color="#444444", linewidth=1.2, label="wrong turns")
    count_axis.set_ylabel("wrong turns")
    count_axis.set_ylim(bottom=0)
    count_axis.spines[["top"]].set_visible(False)
    handles, labels = ax.get_legend_handles_labels()
    extra, extra_labels = count_axis.get_legend_handles_labels()
    ax.legend(
        handles + extra,
        labels + extra_labels,
        fontsize="small",
        loc="upper left",
        bbox_to_anchor=(1.1, 1.0),
    )
    return figure


def write_category_figure(run_dir: Path, summary: RunSummary) -> Path | None:
    """Write :data:`CATEGORY_FIGURE` into ``run_dir`` when the run has a wrong turn."""
    taxonomy = summary.error_taxonomy
    path = run_dir / CATEGORY_FIGURE
    usable = taxonomy is not None and not taxonomy.unavailable
    figure = categories_by_turn_figure(taxonomy) if usable else None
    if figure is None:
        path.unlink(missing_ok=True)  # a rebuilt report must not show a stale figure
        return None
    figure.savefig(path, format="png")
    return path


def scored_shares(taxonomy: ErrorTaxonomy) -> dict[str, float]:
    """Share of all scored turns per category (correct and carried included)."""
    counts = {name: entry.count for name, entry in taxonomy.overall.items()}
    scored = sum(counts.values())
    return {name: n / scored for name, n in counts.items() if n} if scored else {}


def categories_per_run_figure(
    labels: Sequence[str], taxonomies: Sequence[ErrorTaxonomy]
) -> Figure | None:
    """One stacked bar per run: the share of its scored turns in every category.

    Over all scored turns, not only the wrong ones, so that a run whose errors turned into
    right answers shows a taller green segment rather than the mix of its few errors.
    """
    shares = [scored_shares(t) for t in taxonomies]
    if len(labels) < 2 or not any(shares):
        return None
    present = {name for row in shares for name in row}
    columns = {name: np.array([row.get(name, 0.0) for row in shares]) for name in present}
    height = max(FIGURE_SIZE[1], 0.45 * len(labels) + 1.5)
    figure = Figure(figsize=(FIGURE_SIZE[0] + 1.5, height), dpi=DPI, layout="constrained")
    ax = figure.add_subplot()
    y = np.arange(len(labels))
    _stack(ax, y, columns, width=0.7, horizontal=True)
    ax.set_yticks(y, [literal(label) for label in labels])
    ax.invert_yaxis()  # first run on top, as in the table
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel(f"share of scored turns ({' and '.join(EXPECTED_UPDATE)}: the update was right)")
    ax.set_title("How each run's turns ended")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def write_categories_per_run(
    labels: Sequence[str], runs: Sequence[str], summaries: Sequence[RunSummary], out_dir: Path
) -> list[Path]:
    """Write :data:`SWEEP_CATEGORY_FIGURE` for a sweep; [] when fewer than two runs have one.

    A label that several runs share (they differ in a field the labels do not show) gets
    the run's folder added, so no two bars look like the same run.
    """
    repeated = {label for label in labels if list(labels).count(label) > 1}
    labels = [
        f"{lb} [{run}]" if lb in repeated else lb for lb, run in zip(labels, runs, strict=True)
    ]
    rows = [
        (label, summary.error_taxonomy) for label, summary in zip(labels, summaries, strict=True)
    ]
    rows = [(label, t) for label, t in rows if t is not None and not t.unavailable]
    figure = categories_per_run_figure([r[0] for r in rows], [r[1] for r in rows])
    if figure is None:
        return []
    path = out_dir / SWEEP_CATEGORY_FIGURE
    figure.savefig(path, format="png")
    return [path]
