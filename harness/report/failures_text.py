"""The error taxonomy and the flexible view in the table printed at the end of a run."""

from __future__ import annotations

from collections.abc import Sequence

from harness.analysis.run_summary import RunSummary


def taxonomy_lines(summary: RunSummary, report_turns: Sequence[int]) -> list[str]:
    """Lines of the printed table: the two most frequent error categories, the flexible view."""
    lines = []
    taxonomy = summary.error_taxonomy
    if taxonomy is not None and taxonomy.unavailable:
        lines.append(f"failures   n/a ({taxonomy.unavailable})")
    elif taxonomy is not None:
        parts = []
        for name, entry in taxonomy.top(2):
            text = f"{name} {entry.share:.0%}"
            if entry.chance_share is not None:
                text += f" (chance {entry.chance_share:.0%})"
            parts.append(text)
        top = ", ".join(parts) if parts else "none"
        lines.append(f"failures   {top} of {taxonomy.wrong_turns:,} wrong turns")
    flexible = summary.flexible
    if flexible is not None:
        curve = flexible.index_accuracy
        shown = [t for t in report_turns if 1 <= t <= len(curve) and curve[t - 1] is not None]
        values = ", ".join(f"{curve[t - 1]:.3f}" for t in shown)
        at = f"index acc {values} at turns {', '.join(map(str, shown))}; " if shown else ""
        lines.append(
            f"flexible   {at}last integer of {flexible.turns_extracted:,} tagless replies, "
            f"{flexible.turns_rescued:,} of them right"
        )
    return lines
