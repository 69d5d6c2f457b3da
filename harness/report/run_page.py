"""A one-file HTML report of a run: headline, tables, figures and how the model failed.

The report is a single self-contained file (figures inlined as base64 data URIs, inline CSS,
no script, nothing fetched), so it can be mailed, attached to an issue or opened offline.
Model replies are untrusted text: every string that came from a model, a config or a file
is escaped before it reaches the page.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.metrics import FORMAT_ERRORS, UNSCORED_STATUSES
from harness.analysis.summary import SUMMARY_FILE
from harness.files import atomic_write_text, read_json
from harness.records.manifest import MANIFEST_FILE
from harness.records.schema import TurnRecord, latest_records, read_records
from harness.report.failure_figures import write_category_figure
from harness.report.failures_section import taxonomy_section
from harness.report.run_figures import TASK_FIGURE, TURN_FIGURE, load_summary, write_run_figures

REPORT_FILE = "report.html"

"""Statuses the metrics leave out: no answer of the model's was judged on these turns."""
FAILURES_SHOWN = 5
TURNS_BEFORE_FAILURE = 2
MAX_TEXT_CHARS = 1500
"""Longer replies (CoT can run to thousands of characters) are cut, saying how much is left."""

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
h3 { font-size: 1.05em; margin-bottom: 0.3em; }
.subtitle { color: #555; margin-top: 0; }
.banner { padding: 0.8em 1em; border-radius: 6px; margin: 1em 0; font-weight: 600; }
.banner.simulated { background: #fdecea; border: 2px solid #c0392b; color: #7b1d13; }
.banner.incomplete { background: #fff6dd; border: 2px solid #d39e00; color: #6b5000; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.6em; vertical-align: top; }
th { background: #f4f5f7; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.dataframe td { text-align: right; font-variant-numeric: tabular-nums; }
table.dataframe td:first-child { text-align: left; }
td.text { white-space: pre-wrap; word-break: break-word; max-width: 30em;
          font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.9em; }
tr.failed td { background: #fdecea; }
pre { background: #f6f8fa; border: 1px solid #ddd; padding: 0.8em; overflow-x: auto;
      font-size: 0.85em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
.muted { color: #666; font-size: 0.9em; }
div.wide { overflow-x: auto; }
"""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _interval(pair: Sequence[float | None] | None, digits: int = 3) -> str:
    if not pair or pair[0] is None or pair[1] is None:
        return "n/a"
    return f"[{pair[0]:.{digits}f}, {pair[1]:.{digits}f}]"


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _table(frame: pd.DataFrame) -> str:
    """A pandas table with every cell escaped (labels and values may come from a model).

    Floats keep four significant digits (a horizon of 11.2 steps, an accuracy of 0.8733, a
    cost of 0.0001234); a wide table scrolls inside its box instead of widening the page.
    """
    table = frame.to_html(
        index=False, escape=True, border=0, na_rep="n/a", float_format=lambda x: f"{x:.4g}"
    )
    return f'<div class="wide">{table}</div>'


def horizon_text(summary: dict[str, Any]) -> str:
    """The observed H_s in words, a censored horizon as the lower bound it is."""
    h = summary["horizon"]
    if h is None:
        source = summary.get("history", {}).get("source", "rewritten")
        return f"not defined: the history is {source}, so only turn accuracy measures the model"
    if h["steps"] is None:
        return "not measured: no turn was scored"
    if h["censored"]:
        return f">= {h['steps']:.0f} steps (task accuracy never fell below {h['s']:g})"
    text = f"{h['steps']:.1f} steps = {h['turns']:.1f} turns"
    if h.get("ci95"):
        text += f", 95% CI {_interval(h['ci95'], 1)} steps"
    return text


def compounding_note(summary: dict[str, Any]) -> str | None:
    """How the observed horizon compares with independent errors (Proposition 1)."""
    h, p1 = summary["horizon"], summary["prop1"]
    if h is None or p1 is None:
        return None
    predicted = p1.get("predicted_steps")
    if h["steps"] is None or h["censored"] or not predicted:
        return None
    ratio = h["steps"] / predicted
    return (
        f"Observed / predicted = {ratio:.2f}. Below 1, errors compound faster than independent "
        "per-step errors would (for example self-conditioning on earlier mistakes); above 1, "
        "the model recovers or its errors cluster in few episodes. Compare with the interval "
        "before reading much into it."
    )


def accuracy_table(summary: dict[str, Any], turns: Sequence[int]) -> pd.DataFrame:
    """Accuracies and their 95% intervals at the given 1-based turns."""
    ci = summary.get("ci95") or {}
    rows = []
    for turn in turns:
        i = turn - 1
        row: dict[str, object] = {"turn": turn, "steps": turn * summary["k"]}
        for metric, name in (
            ("turn_accuracy", "turn acc."),
            ("task_accuracy", "task acc."),
            ("index_accuracy", "index acc."),
        ):
            row[name] = _fmt(summary[metric][i])
            intervals = ci.get(metric)
            row[f"{name} 95% CI"] = _interval(intervals[i] if intervals else None)
        rows.append(row)
    return pd.DataFrame(rows)


def table_turns(summary: dict[str, Any], manifest: dict[str, Any]) -> list[int]:
    """The configured report turns that lie within the run, plus its last turn."""
    wanted = manifest.get("config", {}).get("metrics", {}).get("report_turns", [1, 5, 10, 20])
    total = summary["turns"]
    return sorted({t for t in wanted if 1 <= t <= total} | {total})


def counts_table(summary: dict[str, Any]) -> pd.DataFrame:
    """What went wrong besides wrong answers, and what the run consumed."""
    usage = summary["usage"]
    estimated = " (estimated)" if usage.get("estimated") else ""
    kinds = summary.get("format_errors_by_kind", {})
    rows: list[tuple[str, object]] = [
        ("turns scored", summary["turns_scored"]),
        ("turns unfinished", summary["turns_unfinished"]),
        ("format errors (all kinds)", summary["format_errors"]),
        *((f"format error: {kind}", kinds.get(kind, 0)) for kind in FORMAT_ERRORS),
        ("context exceeded (scored wrong)", summary["context_exceeded"]),
        ("provider errors (unscored turns)", summary["provider_errors"]),
        ("provider errors (all attempts)", summary.get("provider_errors_total", "n/a")),
        ("retries", summary["retries"]),
        ("prompt tokens" + estimated, usage["prompt_tokens"]),
        ("completion tokens" + estimated, usage["completion_tokens"]),
        ("reasoning tokens", usage.get("reasoning_tokens", 0)),
        ("cached prompt tokens", usage.get("cached_tokens", 0)),
        ("mean latency per request (s)", _fmt(summary.get("mean_latency_s"))),
    ]
    return pd.DataFrame(
        [(name, f"{v:,}" if isinstance(v, int) else v) for name, v in rows],
        columns=["count", "value"],
    )


def provenance_table(manifest: dict[str, Any]) -> pd.DataFrame:
    """Where the numbers came from: enough to find the code and data again."""
    task_set = manifest.get("task_set", {})
    rows = [
        ("created", manifest.get("created")),
        ("git commit", manifest.get("git_commit")),
        ("config hash", manifest.get("config_hash")),
        ("task set", f"{task_set.get('origin')}, fingerprint {task_set.get('fingerprint')}"),
        ("python", manifest.get("python")),
        ("platform", manifest.get("platform")),
        ("command", " ".join(manifest.get("command") or [])),
    ]
    return pd.DataFrame([(k, "n/a" if v is None else v) for k, v in rows], columns=["", "value"])


def is_failure(record: TurnRecord) -> bool:
    """The turn was scored and its answer was not the true running total.

    That covers wrong numbers, format errors (no answer) and running out of context; a
    provider error or a filled-in turn was never the model's answer.
    """
    return record.status not in UNSCORED_STATUSES and record.answer != record.truth


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
        if episode not in firsts and is_failure(record):
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
    show_history = any(r.shown is not None and r.shown != r.answer for r in example.records)
    headers = ["turn", "keys", "truth", "own prev. + values", "reply (raw)", "answer", "status"]
    headers += ["off by"]
    if show_history:
        headers.append("history shows")
    if show_reasoning:
        headers.append("reasoning (never shown again)")
    lines = ["<table>", "<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in headers) + "</tr>"]
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
        if show_history:
            cells.append(("num", "" if record.shown is None else record.shown))
        if show_reasoning:
            cells.append(("text", _clip(record.reasoning or "")))
        row_class = ' class="failed"' if record.turn == example.turn else ""
        lines.append(
            f"<tr{row_class}>"
            + "".join(f'<td class="{kind}">{_esc(value)}</td>' for kind, value in cells)
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


def _headline(summary: dict[str, Any]) -> str:
    h, p1 = summary["horizon"], summary["prop1"]
    if h is None or p1 is None:
        rows = [("Horizon", _esc(horizon_text(summary)))]
        body = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
        return "<h2>Headline</h2>\n<table>" + body + "</table>"
    s = f"{h['s']:g}"
    rows = [
        (f"Horizon H<sub>{s}</sub> (observed)", _esc(horizon_text(summary))),
        (
            f"H<sub>{s}</sub> from a logistic fit (METR)",
            _esc(f"{_fmt(h.get('logistic_steps'), 1)} steps"),
        ),
        ("Per-step accuracy p&#770; (Prop. 1)", _esc(_fmt(p1.get("p_hat"), 4))),
        (
            f"Predicted H<sub>{s}</sub> = ln s / ln p&#770;",
            _esc(f"{_fmt(p1.get('predicted_steps'), 1)} steps"),
        ),
    ]
    body = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    note = compounding_note(summary)
    return (
        "<h2>Headline</h2>\n<table>"
        + body
        + "</table>"
        + (f'\n<p class="muted">{_esc(note)}</p>' if note else "")
    )


def render_report(summary: dict[str, Any], manifest: dict[str, Any], run_dir: Path) -> str:
    """The report's HTML, given the run's files (figures must already be in ``run_dir``)."""
    model, mode, k = summary["model"], summary["mode"], summary["k"]
    title = f"{model}: dict-sum, {mode}, K={k}" + (" [SIMULATED]" if summary["simulated"] else "")
    banners = []
    if summary["simulated"]:
        banners.append(
            '<div class="banner simulated">SIMULATED: these numbers come from the simulated '
            "executor (a random process with a set per-step accuracy), not from a language "
            "model. Use them to check the harness, never to compare models.</div>"
        )
    if summary.get("status", "complete") != "complete":
        note = f" ({summary['note']})" if summary.get("note") else ""
        banners.append(
            f'<div class="banner incomplete">Run {_esc(summary["status"])}{_esc(note)}: '
            f"{_esc(summary['turns_unfinished'])} turns unfinished.</div>"
        )
    figures = "\n".join(
        f'<figure><img alt="{_esc(alt)}" src="{_data_uri(run_dir / name)}"></figure>'
        for name, alt in (
            (TURN_FIGURE, "turn and index accuracy per turn"),
            (TASK_FIGURE, "task accuracy against task length, with horizons"),
        )
        if (run_dir / name).exists()  # no task figure under a rewritten history
    )
    config_json = json.dumps(manifest.get("config", {}), indent=2)
    records = read_records(run_dir)
    sections = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f'<p class="subtitle">{_esc(summary["episodes"])} episodes x '
        f"{_esc(summary['turns'])} turns, experiment {_esc(summary.get('experiment', 'n/a'))}, "
        f"status {_esc(summary.get('status', 'n/a'))}; run directory "
        f"<code>{_esc(run_dir.resolve())}</code></p>",
        *banners,
        _headline(summary),
        "<h2>Accuracy at selected turns</h2>",
        _table(accuracy_table(summary, table_turns(summary, manifest))),
        '<p class="muted">Turn accuracy: the answer equals the model\'s own previous answer '
        "plus this turn's values. Task accuracy: every turn so far was right. Index accuracy: "
        "the answer equals the true running total. Intervals: bootstrap over whole episodes "
        f"({_esc((summary.get('bootstrap') or {}).get('resamples', 'n/a'))} resamples).</p>",
        "<h2>Figures</h2>",
        figures,
        taxonomy_section(summary, manifest, records, run_dir),
        _failures_section(records, summary["episodes"]),
        "<h2>Counts</h2>",
        _table(counts_table(summary)),
        "<h2>Configuration</h2>",
        f"<pre>{_esc(config_json)}</pre>",
        _table(provenance_table(manifest)),
        "</body></html>",
    ]
    return "\n".join(sections) + "\n"


def write_run_report(run_dir: Path) -> Path:
    """Draw the run's figures and write ``report.html`` beside them; return its path."""
    summary = load_summary(run_dir)
    manifest = read_json(run_dir / MANIFEST_FILE)
    write_run_figures(run_dir)
    write_category_figure(run_dir, summary)
    path = run_dir / REPORT_FILE
    atomic_write_text(path, render_report(summary, manifest, run_dir))
    return path


def main(argv: list[str] | None = None) -> None:
    """``lhe-report DIR``: a run's figures and HTML report, or a sweep's report.

    DIR holding a ``summary.json`` is one run; any other DIR is searched for runs, which are
    aggregated into ``DIR/report/``.
    """
    parser = argparse.ArgumentParser(prog="lhe-report", description=main.__doc__)
    parser.add_argument("run_dir", type=Path, help="a run directory, or a folder of runs")
    args = parser.parse_args(argv)
    try:
        if (args.run_dir / SUMMARY_FILE).exists():
            paths = [write_run_report(args.run_dir)]
        else:
            from harness.report.sweep_page import write_sweep_report

            paths = write_sweep_report(args.run_dir)
    except FileNotFoundError as exc:
        print(f"lhe-report: error: {exc}", file=sys.stderr)
        sys.exit(2)
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()
