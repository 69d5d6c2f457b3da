"""Collect every run under a directory into one table, one row per run configuration.

Reads only ``summary.json`` and ``manifest.json`` of each run, so it works on a finished
sweep, a half-finished one, or a folder of runs copied from several machines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.run_summary import SUMMARY_FILE, RunSummary, read_summary
from harness.analysis.strategy_stats import strategy_columns
from harness.records.manifest import MANIFEST_FILE, read_manifest

REPORT_TURNS = (1, 10, 50, 100)
"""Turns (1-based) whose turn accuracy gets a column of its own."""

TABLE_STEM = "sweep"


def find_runs(root: Path) -> list[Path]:
    """Run directories below ``root`` (any folder holding a summary and a manifest)."""
    return sorted(
        path.parent for path in root.rglob(SUMMARY_FILE) if (path.parent / MANIFEST_FILE).exists()
    )


def _at(values: list[float | None], turn: int) -> float | None:
    return values[turn - 1] if 1 <= turn <= len(values) else None


def _interval(summary: RunSummary, metric: str, turn: int) -> tuple[Any, Any]:
    bands = getattr(summary.ci95, metric)
    if not bands or not 1 <= turn <= len(bands) or bands[turn - 1] is None:
        return None, None
    lo, hi = bands[turn - 1]
    return lo, hi


def run_row(run_dir: Path, root: Path) -> dict[str, Any]:
    """One table row: the run's configuration and its headline results."""
    summary = read_summary(run_dir)
    manifest = read_manifest(run_dir)
    history = summary.history
    horizon = summary.horizon
    prop1 = summary.prop1
    ci = (horizon.ci95 if horizon else None) or [None, None]
    turns = summary.turns
    target = history.target_turn or turns
    target_lo, target_hi = _interval(summary, "turn_accuracy", target)
    row: dict[str, Any] = {
        "run": str(run_dir.relative_to(root)) if run_dir != root else ".",
        "model": summary.model,
        "simulated": summary.simulated,
        "experiment": summary.experiment,
        "mode": summary.mode,
        "k": summary.k,
        "turns": turns,
        "episodes": summary.episodes,
        "task_set": manifest.task_set.fingerprint,
        "history": history.source,
        "rate": history.rate,
        "window": history.window,
        "target_turn": target,
        "filled_turns": (history.target_turn or 1) - 1,
        "votes": summary.votes,
        **strategy_columns(summary),
        "status": summary.status,
        "horizon_steps": horizon.steps if horizon else None,
        "horizon_lo": ci[0],
        "horizon_hi": ci[1],
        "horizon_censored": horizon.censored if horizon else None,
        "logistic_steps": horizon.logistic_steps if horizon else None,
        "logistic_extrapolated": horizon.logistic_extrapolated if horizon else None,
        "p_hat": prop1.p_hat if prop1 else None,
        "prop1_steps": prop1.predicted_steps if prop1 else None,
        "target_turn_accuracy": _at(summary.turn_accuracy, target),
        "target_turn_lo": target_lo,
        "target_turn_hi": target_hi,
        "format_drift": summary.format_drift.share if summary.format_drift else None,
        "final_task_accuracy": _at(summary.task_accuracy, turns),
        "final_index_accuracy": _at(summary.index_accuracy, turns),
    }
    for turn in REPORT_TURNS:
        row[f"turn_acc_{turn}"] = _at(summary.turn_accuracy, turn)
    economics = summary.economics
    spent = summary.tokens_spent
    row.update(
        cost_usd=economics.cost_usd if economics else None,
        usd_per_correct_step=economics.usd_per_correct_step if economics else None,
        horizon_steps_per_usd=economics.horizon_steps_per_usd if economics else None,
        tokens_spent=spent.total,
        prompt_tokens_spent=spent.prompt_tokens,
        completion_tokens_spent=spent.completion_tokens,
        tokens_replayed=summary.tokens_replayed,
        tokens_estimated=spent.estimated,
        format_errors=summary.format_errors,
        provider_errors=summary.provider_errors,
        elapsed_s=summary.elapsed_s,
    )
    return row


def collect(root: Path) -> pd.DataFrame:
    """The sweep table: one row per run under ``root``, in a stable order."""
    rows = [run_row(run_dir, root) for run_dir in find_runs(root)]
    if not rows:
        raise FileNotFoundError(f"no runs (summary.json + manifest.json) under {root}")
    table = pd.DataFrame(rows)
    order = ["experiment", "model", "mode", "k", "history", "rate", "window", "votes"]
    order += ["strategy", "run"]
    return table.sort_values(order, na_position="first", kind="stable").reset_index(drop=True)


def write_tables(table: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Save the table as parquet (for pandas), CSV (for anything) and Markdown (for reading)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{TABLE_STEM}.{ext}" for ext in ("parquet", "csv", "md")]
    table.to_parquet(paths[0], index=False)
    table.to_csv(paths[1], index=False)
    paths[2].write_text(table.to_markdown(index=False, floatfmt=".3f") + "\n", encoding="utf-8")
    return paths


def single_turn_capacity(table: pd.DataFrame, s: float = 0.5) -> pd.DataFrame:
    """Largest L (keys in one message) each model still solves with accuracy >= ``s``.

    Reads the ``single_turn`` runs (one turn of K = L keys): the capacity is the largest L
    whose own accuracy, and that of every smaller L, is at least ``s``.
    """
    runs = table[(table["turns"] == 1)].sort_values("k")
    rows = []
    for (model, mode), group in runs.groupby(["model", "mode"], sort=True):
        capacity = 0
        for k, accuracy in zip(group["k"], group["final_index_accuracy"], strict=True):
            if accuracy is None or pd.isna(accuracy) or accuracy < s:
                break
            capacity = int(k)
        rows.append({"model": model, "mode": mode, "capacity_steps": capacity, "s": s})
    return pd.DataFrame(rows, columns=["model", "mode", "capacity_steps", "s"])
