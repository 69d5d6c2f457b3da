"""A one-file HTML report of a run: headline, tables, figures and how the model failed.

The report is a single self-contained file (figures inlined as base64 data URIs, inline CSS,
no script, nothing fetched), so it can be mailed, attached to an issue or opened offline.
Model replies are untrusted text: every string that came from a model, a config or a file
is escaped before it reaches the page.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.analysis.format_drift import drift_warning
from harness.analysis.run_summary import RunSummary, read_summary
from harness.files import atomic_write_text
from harness.records.manifest import Manifest, read_manifest
from harness.records.schema import (
    FORMAT_ERRORS,
    TurnRecord,
    fails_task,
    latest_records,
    read_records,
)
from harness.report.failure_figures import write_category_figure
from harness.report.failures_section import taxonomy_section
from harness.report.html import STYLE, data_uri, esc, frame_table
from harness.report.run_figures import (
    LIMIT_FIGURE,
    TASK_FIGURE,
    TURN_FIGURE,
    write_run_figures,
)
from harness.report.survival_section import HAZARD_FIGURE, survival_section
from harness.report.text import fmt, horizon_text, interval_text, logistic_text

REPORT_FILE = "report.html"
FAILURES_SHOWN = 5
TURNS_BEFORE_FAILURE = 2
MAX_TEXT_CHARS = 1500
"""Longer replies (CoT can run to thousands of characters) are cut, saying how much is left."""


def compounding_note(summary: RunSummary) -> str | None:
    """How the observed horizon compares with independent errors (Proposition 1)."""
    h, p1 = summary.horizon, summary.prop1
    if h is None or p1 is None:
        return None
    predicted = p1.predicted_steps
    if h.steps is None or h.censored or not predicted:
        return None
    ratio = h.steps / predicted
    return (
        f"Observed / predicted = {ratio:.2f}. Below 1, errors compound faster than independent "
        "per-step errors would (for example self-conditioning on earlier mistakes); above 1, "
        "the model recovers or its errors cluster in few episodes. Compare with the interval "
        "before reading much into it."
    )


def accuracy_table(summary: RunSummary, turns: Sequence[int]) -> pd.DataFrame:
    """Accuracies and their 95% intervals at the given 1-based turns."""
    rows = []
    for turn in turns:
        i = turn - 1
        row: dict[str, object] = {"turn": turn, "steps": turn * summary.k}
        for metric, name in (
            ("turn_accuracy", "turn acc."),
            ("task_accuracy", "task acc."),
            ("index_accuracy", "index acc."),
        ):
            row[name] = fmt(getattr(summary, metric)[i])
            intervals = getattr(summary.ci95, metric)
            row[f"{name} 95% CI"] = interval_text(intervals[i] if intervals else None)
        rows.append(row)
    return pd.DataFrame(rows)


def table_turns(summary: RunSummary, manifest: Manifest) -> list[int]:
    """The configured report turns that lie within the run, plus its last turn."""
    wanted = manifest.config.get("metrics", {}).get("report_turns", [1, 5, 10, 20])
    total = summary.turns
    return sorted({t for t in wanted if 1 <= t <= total} | {total})


def counts_table(summary: RunSummary) -> pd.DataFrame:
    """What went wrong besides wrong answers, and what the run consumed."""
    spent = summary.tokens_spent
    estimated = " (estimated)" if spent.estimated else ""
    kinds = summary.format_errors_by_kind
    rows: list[tuple[str, object]] = [
        ("turns scored", summary.turns_scored),
        ("turns unfinished", summary.turns_unfinished),
        ("format errors (all kinds)", summary.format_errors),
        *((f"format error: {kind}", kinds.get(kind, 0)) for kind in FORMAT_ERRORS),
        ("context exceeded (scored wrong)", summary.context_exceeded),
        ("provider errors (unscored turns)", summary.provider_errors),
        ("provider errors (all attempts)", summary.provider_errors_total),
        ("retries", summary.retries),
        ("paid requests", spent.requests),
        ("prompt tokens spent" + estimated, spent.prompt_tokens),
        ("completion tokens spent" + estimated, spent.completion_tokens),
        ("reasoning tokens spent", spent.reasoning_tokens),
        ("cached prompt tokens (provider cache)", spent.cached_tokens),
        ("tokens replayed from the response cache", summary.tokens_replayed),
        ("mean latency per request (s)", fmt(summary.mean_latency_s)),
    ]
    return pd.DataFrame(
        [(name, f"{v:,}" if isinstance(v, int) else v) for name, v in rows],
        columns=["count", "value"],
    )


def provenance_table(manifest: Manifest) -> pd.DataFrame:
    """Where the numbers came from: enough to find the code and data again."""
    task_set = manifest.task_set
    rows = [
        ("created", manifest.created),
        ("git commit", manifest.git_commit),
        ("config hash", manifest.config_hash),
        ("task set", f"{task_set.origin}, fingerprint {task_set.fingerprint}"),
        ("python", manifest.python),
        ("platform", manifest.platform),
        ("command", " ".join(manifest.command)),
    ]
    return pd.DataFrame([(k, "n/a" if v is None else v) for k, v in rows], columns=["", "value"])


@dataclass(frozen=True)
class FailureExample:
    """The first failed turn of one episode, with the turns that led up to it."""

    episode: int
    turn: int
    records: tuple[TurnRecord, ...]
    """The failing turn and up to :data:`TURNS_BEFORE_FAILURE` turns before it, in order."""


def first_failures(
    records: list[TurnRecord], *, limit: int = FAILURES_SHOWN, before: int = TURNS_BEFORE_FAILURE
) -> tuple[list[FailureExample], int]:
    """Up to ``limit`` episodes' first failures, and how many episodes failed in all.

    One example of every distinct failure status is taken first, so a run that mostly
    miscounts but sometimes breaks the format shows both; the rest are the earliest episodes.
    """
    latest = latest_records(records)
    firsts: dict[int, TurnRecord] = {}
    for (episode, _turn), record in sorted(latest.items()):
        if episode not in firsts and fails_task(record):
            firsts[episode] = record
    chosen: list[int] = []
    seen_status: set[str] = set()
    for episode, record in firsts.items():
        if record.status not in seen_status and len(chosen) < limit:
            seen_status.add(record.status)
            chosen.append(episode)
    for episode in firsts:
        if len(chosen) >= limit:
            break
        if episode not in chosen:
            chosen.append(episode)
    examples = []
    for episode in sorted(chosen):
        failed = firsts[episode]
        window = [
            latest[(episode, turn)]
            for turn in range(max(0, failed.turn - before), failed.turn + 1)
            if (episode, turn) in latest
        ]
        examples.append(FailureExample(episode=episode, turn=failed.turn, records=tuple(window)))
    return examples, len(firsts)


def _clip(text: str) -> str:
    if len(text) <= MAX_TEXT_CHARS:
        return text
    return text[:MAX_TEXT_CHARS] + f"\n... ({len(text) - MAX_TEXT_CHARS:,} more characters)"


def failure_table(example: FailureExample) -> str:
    """One episode's turns up to its first failure, the failing row highlighted.

    Built by hand rather than with pandas, whose cells print a reply's line breaks as a
    literal backslash-n.
    """
    show_reasoning = any(r.reasoning for r in example.records)
    show_history = any(
        r.shown_text is not None or (r.shown is not None and r.shown != r.answer)
        for r in example.records
    )
    headers = ["turn", "keys", "truth", "own prev. + values", "reply (raw)", "answer", "status"]
    headers += ["off by"]
    if show_history:
        headers.append("history shows")
    if show_reasoning:
        headers.append("reasoning (never shown again)")
    lines = ["<table>", "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr>"]
    for record in example.records:
        status = record.status + (f": {record.error}" if record.error else "")
        miss = None if record.answer is None else record.answer - record.truth
        off = "" if miss is None else "0" if miss == 0 else f"{miss:+d}"
        cells = [
            ("num", record.turn + 1),
            ("text", ", ".join(record.keys)),
            ("num", record.truth),
            ("num", record.base + record.delta),
            ("text", _clip(record.reply)),
            ("num", "none" if record.answer is None else record.answer),
            ("text", status),
            ("num", off),
        ]
        if show_history and record.shown_text is not None:  # written by the harness
            cells.append(("text", _clip(record.shown_text)))
        elif show_history:
            cells.append(("num", "" if record.shown is None else record.shown))
        if show_reasoning:
            cells.append(("text", _clip(record.reasoning or "")))
        row_class = ' class="failed"' if record.turn == example.turn else ""
        lines.append(
            f"<tr{row_class}>"
            + "".join(f'<td class="{kind}">{esc(value)}</td>' for kind, value in cells)
            + "</tr>"
        )
    lines.append("</table>")
    return "\n".join(lines)


def _failures_section(records: list[TurnRecord], episodes: int) -> str:
    examples, failed = first_failures(records)
    parts = [
        "<h3>First failures</h3>",
        f"<p>{failed} of {episodes} episodes gave a wrong running total at some turn. "
        f"Below, for {len(examples)} of them, the first such turn (highlighted) and the "
        f"{TURNS_BEFORE_FAILURE} turns before it. <em>truth</em> is the true running total; "
        "<em>own prev. + values</em> is the model's previous answer plus this turn's values, "
        "the answer a correct update would give (turn accuracy).</p>",
    ]
    if not examples:
        parts.append("<p>No scored turn was wrong.</p>")
    for example in examples:
        parts.append(f"<h4>Episode {example.episode}: first wrong at turn {example.turn + 1}</h4>")
        parts.append(failure_table(example))
    return "\n".join(parts)


def _headline(summary: RunSummary) -> str:
    h, p1 = summary.horizon, summary.prop1
    if h is None or p1 is None:
        rows = [("Horizon", esc(horizon_text(summary)))]
        body = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
        return "<h2>Headline</h2>\n<table>" + body + "</table>"
    s = f"{h.s:g}"
    rows = [
        (f"Horizon H<sub>{s}</sub> (observed)", esc(horizon_text(summary))),
        (
            f"H<sub>{s}</sub> from a logistic fit (METR)",
            esc(logistic_text(h)),
        ),
        ("Per-step accuracy p&#770; (Prop. 1)", esc(fmt(p1.p_hat, 4))),
        (
            f"Predicted H<sub>{s}</sub> = ln s / ln p&#770;",
            esc(f"{fmt(p1.predicted_steps, 1)} steps"),
        ),
    ]
    body = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    note = compounding_note(summary)
    return (
        "<h2>Headline</h2>\n<table>"
        + body
        + "</table>"
        + (f'\n<p class="muted">{esc(note)}</p>' if note else "")
    )


def render_report(summary: RunSummary, manifest: Manifest, run_dir: Path) -> str:
    """The report's HTML, given the run's files (figures must already be in ``run_dir``)."""
    model, mode, k = summary.model, summary.mode, summary.k
    title = f"{model}: dict-sum, {mode}, K={k}" + (" [SIMULATED]" if summary.simulated else "")
    banners = []
    if summary.simulated:
        banners.append(
            '<div class="banner simulated">SIMULATED: these numbers come from the simulated '
            "executor (a random process with a set per-step accuracy), not from a language "
            "model. Use them to check the harness, never to compare models.</div>"
        )
    if summary.status != "complete":
        note = f" ({summary.note})" if summary.note else ""
        banners.append(
            f'<div class="banner incomplete">Run {esc(summary.status)}{esc(note)}: '
            f"{esc(summary.turns_unfinished)} turns unfinished.</div>"
        )
    if warning := drift_warning(summary.format_drift):
        banners.append(f'<div class="banner incomplete">{esc(warning)}</div>')
    figures = "\n".join(
        f'<figure><img alt="{esc(alt)}" src="{data_uri(run_dir / name)}"></figure>'
        for name, alt in (
            (TURN_FIGURE, "turn and index accuracy per turn"),
            (TASK_FIGURE, "task accuracy against task length, with horizons"),
            (LIMIT_FIGURE, "adaptive concurrency limit over time and 429 replies"),
        )
        if (run_dir / name).exists()  # no task figure under a rewritten history
    )
    config_json = json.dumps(manifest.config, indent=2)
    records = read_records(run_dir)
    sections = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="subtitle">{esc(summary.episodes)} episodes x '
        f"{esc(summary.turns)} turns, experiment {esc(summary.experiment)}, "
        f"status {esc(summary.status)}; run directory "
        f"<code>{esc(run_dir.resolve())}</code></p>",
        *banners,
        _headline(summary),
        "<h2>Accuracy at selected turns</h2>",
        frame_table(accuracy_table(summary, table_turns(summary, manifest))),
        '<p class="muted">Turn accuracy: the answer equals the model\'s own previous answer '
        "plus this turn's values. Task accuracy: every turn so far was right. Index accuracy: "
        "the answer equals the true running total. Intervals: bootstrap over whole episodes "
        f"({esc(summary.bootstrap.resamples)} resamples).</p>",
        "<h2>Figures</h2>",
        figures,
        survival_section(
            summary,
            data_uri(run_dir / HAZARD_FIGURE) if (run_dir / HAZARD_FIGURE).exists() else None,
        ),
        taxonomy_section(summary, manifest, records, run_dir),
        _failures_section(records, summary.episodes),
        "<h2>Counts</h2>",
        frame_table(counts_table(summary)),
        "<h2>Configuration</h2>",
        f"<pre>{esc(config_json)}</pre>",
        frame_table(provenance_table(manifest)),
        "</body></html>",
    ]
    return "\n".join(sections) + "\n"


def write_run_report(run_dir: Path) -> Path:
    """Draw the run's figures and write ``report.html`` beside them; return its path."""
    summary = read_summary(run_dir)
    manifest = read_manifest(run_dir)
    write_run_figures(run_dir, summary)
    write_category_figure(run_dir, summary)
    path = run_dir / REPORT_FILE
    atomic_write_text(path, render_report(summary, manifest, run_dir))
    return path
