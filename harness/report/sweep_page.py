"""The report of a sweep (or of any folder of runs): tables, figures and one HTML page."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.analysis.aggregate import collect, single_turn_capacity, write_tables
from harness.analysis.compare import COMPARISON_FILE, comparison_rows, sweep_comparison
from harness.analysis.format_drift import drift_by_rate, drift_by_rate_title
from harness.analysis.run_summary import read_summary
from harness.economics.costs import pareto_frontier
from harness.files import atomic_write_json, atomic_write_text
from harness.records.manifest import read_manifest
from harness.report.failure_figures import write_categories_per_run
from harness.report.horizon_per_dollar import (
    FIGURE_NAME,
    horizon_per_dollar_table,
    plot_horizon_per_dollar,
    wanted,
)
from harness.report.html import STYLE, data_uri, esc, frame_table
from harness.report.survival_section import self_conditioning_table
from harness.report.sweep_figures import run_labels, sweep_figures

REPORT_DIR = "report"
PAGE = "index.html"

SHOWN_COLUMNS = [
    "run",
    "model",
    "mode",
    "k",
    "history",
    "rate",
    "window",
    "votes",
    "strategy",
    "status",
    "horizon_steps",
    "horizon_lo",
    "horizon_hi",
    "horizon_censored",
    "logistic_steps",
    "logistic_extrapolated",
    "prop1_steps",
    "target_turn",
    "target_turn_accuracy",
    "format_drift",
    "final_task_accuracy",
    "tokens_spent",
    "tokens_replayed",
    "cost_usd",
]
PARETO_COLUMNS = ["run", "model", "mode", "k", "horizon_steps", "cost_usd", "horizon_steps_per_usd"]


def _comparison(root: Path, table: pd.DataFrame, out_dir: Path) -> tuple[str, pd.DataFrame] | None:
    """Horizons against the baseline (``report.baseline``, else the first run), as lhe-compare."""
    config = read_manifest(root / table["run"][0]).config
    found = sweep_comparison(root, list(table["run"]), (config.get("report") or {}).get("baseline"))
    if found is None:
        return None
    result, skipped = found
    atomic_write_json(out_dir / COMPARISON_FILE, {**result, "left_out": skipped})
    title = f"Horizon against the baseline ({result['pairing']})"
    return title, pd.DataFrame(comparison_rows(result))


def write_sweep_report(root: Path) -> list[Path]:
    """Aggregate every run under ``root`` into ``root/report/``; returns the files written."""
    table = collect(root)
    out_dir = root / REPORT_DIR
    paths = write_tables(table, out_dir)
    extra_tables = []
    single = table[(table["experiment"] == "single_turn") & (table["turns"] == 1)]
    if len(single):
        capacity = single_turn_capacity(single)
        capacity_path = out_dir / "single_turn_capacity.md"
        capacity_path.write_text(capacity.to_markdown(index=False) + "\n", encoding="utf-8")
        paths.append(capacity_path)
        extra_tables.append(("Single-turn capacity (largest L solved at s)", capacity))
    drift = drift_by_rate(table)
    if len(drift):
        extra_tables.append((drift_by_rate_title(drift), drift))
    frontier = pareto_frontier(table)
    if len(frontier):
        frontier_path = out_dir / "pareto.md"
        frontier_path.write_text(frontier.to_markdown(index=False) + "\n", encoding="utf-8")
        paths.append(frontier_path)
        extra_tables.append(
            ("Pareto frontier: longest horizon for the money", frontier[PARETO_COLUMNS])
        )
    comparison = _comparison(root, table, out_dir)
    if comparison is not None:
        paths.append(out_dir / COMPARISON_FILE)
        extra_tables.append(comparison)
    summaries = {run: read_summary(root / run) for run in table["run"]}
    history_effects = self_conditioning_table(table, summaries)
    if history_effects is not None:
        extra_tables.append(
            ("Self-conditioning: history effect injected vs observed (log-odds)", history_effects)
        )
    figures = sweep_figures(table, summaries, out_dir)
    runs = list(table["run"])
    figures += write_categories_per_run(
        run_labels(table), runs, [summaries[run] for run in runs], out_dir
    )
    per_dollar = horizon_per_dollar_table(table) if wanted(table) else None
    if per_dollar is not None and len(per_dollar):
        per_dollar_path = out_dir / "horizon_per_dollar.md"
        per_dollar_path.write_text(per_dollar.to_markdown(index=False) + "\n", encoding="utf-8")
        paths.append(per_dollar_path)
        extra_tables.append(
            ("Horizon per dollar (Pareto frontier across models and strategies)", per_dollar)
        )
        figures.append(plot_horizon_per_dollar(per_dollar, out_dir / FIGURE_NAME))
    paths += figures
    page = out_dir / PAGE
    simulated = bool(table["simulated"].any())
    body = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Sweep {esc(root.name)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Sweep: {esc(root.resolve())}</h1>",
        f'<p class="subtitle">{len(table)} runs; experiments '
        f"{esc(', '.join(sorted(table['experiment'].unique())))}</p>",
    ]
    if simulated:
        body.append(
            '<div class="banner simulated">Some runs use the SIMULATED executor: their '
            "numbers come from a random process, not from a language model.</div>"
        )
    body += ["<h2>Runs</h2>", frame_table(table[[c for c in SHOWN_COLUMNS if c in table]])]
    for title, frame in extra_tables:
        body += [f"<h2>{esc(title)}</h2>", frame_table(frame)]
    body.append("<h2>Figures</h2>")
    body += [
        f'<figure><img alt="{esc(path.stem)}" src="{data_uri(path)}"></figure>' for path in figures
    ]
    body.append("</body></html>")
    atomic_write_text(page, "\n".join(body) + "\n")
    return [*paths, page]
