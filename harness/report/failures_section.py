"""The report's account of *how* a run failed: the error taxonomy as a table, a figure and examples.

Reads the summary's ``error_taxonomy`` for the numbers and the records for one example turn
per category (classified again with the same function, so an example is never of another
category than the table says). Every string from a model or a file is escaped.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np

from harness.analysis.failures import (
    CATEGORIES,
    EXPECTED_UPDATE,
    MEANINGS,
    RULES,
    STATUS_CATEGORIES,
    ErrorTaxonomy,
    classify_run,
    task_set_of,
    turn_values,
)
from harness.analysis.run_summary import RunSummary
from harness.records.manifest import Manifest
from harness.records.schema import TurnRecord, latest_records
from harness.records.table import RecordTable
from harness.report.failure_figures import CATEGORY_COLORS, CATEGORY_FIGURE

MAX_REPLY_CHARS = 600
"""Example replies are cut here: the table is for recognising a shape, not reading a CoT."""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _swatch(name: str) -> str:
    color = CATEGORY_COLORS.get(name, "#ffffff")
    return (
        f'<span style="display:inline-block;width:0.8em;height:0.8em;background:{color};'
        f'border:1px solid #999;margin-right:0.4em"></span>{_esc(name)}'
    )


def _name_cell(name: str) -> str:
    return f'<td style="white-space:nowrap">{_swatch(name)}</td>'


def category_table(taxonomy: ErrorTaxonomy) -> str:
    """Categories that occurred, with their rule, count, share and chance share."""
    headers = ["category", "rule", "what it means", "turns", "share", "chance share", "excess"]
    lines = ["<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in headers) + "</tr>"]
    for name in CATEGORIES:
        entry = taxonomy.overall.get(name)
        if entry is None or entry.count == 0:
            continue
        excess = (
            None
            if entry.share is None or entry.chance_share is None
            else entry.share - entry.chance_share
        )
        cells = [
            _name_cell(name),
            f"<td>{_esc(RULES[name])}</td>",
            f"<td>{_esc(MEANINGS[name])}</td>",
            f'<td class="num">{entry.count:,}</td>',
            f'<td class="num">{_share(entry.share)}</td>',
            f'<td class="num">{_share(entry.chance_share)}</td>',
            f'<td class="num">{"—" if excess is None else f"{excess:+.1%}"}</td>',
        ]
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _clip(text: str) -> str:
    if len(text) <= MAX_REPLY_CHARS:
        return text
    return text[:MAX_REPLY_CHARS] + f"... ({len(text) - MAX_REPLY_CHARS:,} more characters)"


def example_rows(
    records: list[TurnRecord], manifest: Manifest
) -> list[tuple[str, TurnRecord, list[int]]]:
    """The earliest turn (by episode, then turn) of every category but ``correct``.

    Returns (category, record, the turn's key values), in rule order; empty when the task
    set cannot be rebuilt.
    """
    task_set = task_set_of(manifest)
    if isinstance(task_set, str):
        return []
    latest = [record for _, record in sorted(latest_records(records).items())]
    table = RecordTable.from_records(latest)
    codes = classify_run(table, task_set)
    examples = []
    for code, name in enumerate(CATEGORIES):
        if name == "correct":
            continue
        rows = np.flatnonzero(codes == code)
        if rows.size:
            record = latest[int(rows[0])]
            values = turn_values(task_set, np.array([record.episode]), np.array([record.turn]))
            examples.append((name, record, [int(v) for v in values[0]]))
    return examples


def example_table(examples: list[tuple[str, TurnRecord, list[int]]]) -> str:
    """One row per category: the turn's inputs, what a right update gives, and the reply."""
    headers = [
        "category",
        "episode",
        "turn",
        "keys (values)",
        "shown base b",
        "expected u",
        "truth T",
        "answer a",
        "reply (raw)",
    ]
    lines = ["<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in headers) + "</tr>"]
    for name, record, values in examples:
        keys = ", ".join(
            f"{key} ({value})" for key, value in zip(record.keys, values, strict=False)
        )
        cells = [
            _name_cell(name),
            f'<td class="num">{record.episode}</td>',
            f'<td class="num">{record.turn + 1}</td>',
            f'<td class="text">{_esc(keys)}</td>',
            f'<td class="num">{record.base}</td>',
            f'<td class="num">{record.base + record.delta}</td>',
            f'<td class="num">{record.truth}</td>',
            f'<td class="num">{"none" if record.answer is None else record.answer}</td>',
            f'<td class="text">{_esc(_clip(record.reply or record.error or ""))}</td>',
        ]
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def taxonomy_section(
    summary: RunSummary, manifest: Manifest, records: list[TurnRecord], run_dir: Path
) -> str:
    """The "How it failed" heading and the taxonomy under it (table, figure, examples)."""
    parts = ["<h2>How it failed</h2>"]
    taxonomy = summary.error_taxonomy
    if taxonomy is None:
        return parts[0]
    if taxonomy.unavailable:
        parts.append(f"<p>No error taxonomy: {_esc(taxonomy.unavailable)}.</p>")
        return "\n".join(parts)
    if taxonomy.wrong_turns == 0:
        parts.append("<p>Every scored answer was the expected update: nothing to classify.</p>")
        return "\n".join(parts)
    chance = taxonomy.chance
    pairs = (
        f"{chance.permutations} random pairings of its {chance.answers:,} wrong answers"
        if chance and chance.permutations
        else "no pairing (fewer than two wrong answers)"
    )
    coverage = taxonomy.dictionary_coverage
    parts.append(
        f"<p>{taxonomy.wrong_turns:,} scored turns did not give the expected update "
        "u = b + sum(v), where b is the total the history showed the model and v this turn's "
        "values. Each is put in the first category whose rule matches (T: the true running "
        f"total; {', '.join(STATUS_CATEGORIES)} are the reply's status). The <em>chance "
        "share</em> is what the same rule gives when every wrong answer is paired with the "
        f"context of another wrong turn ({_esc(pairs)}): <strong>a category is evidence "
        "only where its share is well above its chance share</strong>. Shares are of the "
        f"wrong turns; {' and '.join(EXPECTED_UPDATE)} are right updates, counted only.</p>"
    )
    if coverage is not None:
        parts.append(
            f'<p class="muted">{coverage:.0%} of the integers between the smallest and the '
            "largest dictionary value are values of some word, so about that share of small "
            "arithmetic slips also reads as wrong_key (the earlier rule). A random pairing "
            "rarely lands that close to u, so the chance share understates this overlap.</p>"
        )
    parts.append(category_table(taxonomy))
    figure = run_dir / CATEGORY_FIGURE
    if figure.exists():
        data = base64.b64encode(figure.read_bytes()).decode("ascii")
        parts.append(
            '<figure><img alt="error categories by turn" '
            f'src="data:image/png;base64,{data}"></figure>'
        )
    examples = example_rows(records, manifest)
    if examples:
        parts.append("<h3>One example per category</h3>")
        parts.append(
            '<p class="muted">The earliest turn of each category (by episode, then turn).</p>'
        )
        parts.append(example_table(examples))
    return "\n".join(parts)
