"""The report of a sweep (or of any folder of runs): tables, figures and one HTML page."""

from __future__ import annotations

from pathlib import Path

from harness.aggregate import collect, single_turn_capacity, write_tables

REPORT_DIR = "report"


def write_sweep_report(root: Path) -> list[Path]:
    """Aggregate every run under ``root`` into ``root/report/``; returns the files written."""
    table = collect(root)
    out_dir = root / REPORT_DIR
    paths = write_tables(table, out_dir)
    if (table["turns"] == 1).any() and (table["experiment"] == "single_turn").any():
        capacity = single_turn_capacity(table[table["experiment"] == "single_turn"])
        capacity_path = out_dir / "single_turn_capacity.md"
        capacity_path.write_text(capacity.to_markdown(index=False) + "\n", encoding="utf-8")
        paths.append(capacity_path)
    return paths
