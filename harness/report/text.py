"""Numbers and horizons in words, shared by the terminal, the pages and the figures.

The printed table at the end of a run lives here too, so a horizon reads the same wherever it
is shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.analysis.format_drift import drift_warning
from harness.analysis.run_summary import SUMMARY_FILE, HorizonSummary, RunSummary
from harness.economics.costs import format_usd
from harness.records.schema import TURNS_FILE
from harness.report.failures_text import taxonomy_lines


def fmt(value: float | None, digits: int = 3) -> str:
    """A number with fixed decimals, ``n/a`` for an unknown one."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def interval_text(pair: Sequence[float | None] | None, digits: int = 3) -> str:
    """``[lo, hi]``, or ``n/a`` when either end is unknown."""
    if not pair or pair[0] is None or pair[1] is None:
        return "n/a"
    return f"[{pair[0]:.{digits}f}, {pair[1]:.{digits}f}]"


def horizon_phrase(
    steps: float,
    *,
    s: float,
    censored: bool,
    ci95: Sequence[float] | None = None,
    turns: float | None = None,
) -> str:
    """An observed horizon's value; a censored one reads as the lower bound it is."""
    if censored:
        return (
            f">= {steps:g} steps (censored: task accuracy never fell below {s:g} "
            "while episodes were at risk)"
        )
    text = f"{steps:.1f} steps"
    if turns is not None:
        text += f" = {turns:.1f} turns"
    if ci95:
        text += f", 95% CI {interval_text(ci95, 1)}"
    return text


def horizon_text(summary: RunSummary) -> str:
    """The observed H_s of a run in words (what the headline and the printed table show)."""
    h = summary.horizon
    if h is None:
        return (
            f"not defined: the history is {summary.history.source}, "
            "so only turn accuracy measures the model"
        )
    if h.steps is None:
        return "not measured: no turn was scored"
    return horizon_phrase(h.steps, s=h.s, censored=h.censored, ci95=h.ci95, turns=h.turns)


def logistic_text(h: HorizonSummary) -> str:
    """The logistic horizon in words, saying so when it is the fit's extrapolation."""
    text = f"{fmt(h.logistic_steps, 1)} steps"
    return text + " (extrapolated past the lengths run)" if h.logistic_extrapolated else text


def _horizon_lines(summary: RunSummary, h: HorizonSummary) -> list[str]:
    p1 = summary.prop1
    unreliable = f"  UNRELIABLE: {h.at_risk} episodes at risk there" if h.reliable is False else ""
    return [
        f"horizon    H_{h.s:g} = {horizon_text(summary)}{unreliable}",
        f"logistic   H_{h.s:g} = {logistic_text(h)}",
        f"prop. 1    p_hat = {fmt(p1.p_hat if p1 else None, 4)} -> predicted "
        f"H = {fmt(p1.predicted_steps if p1 else None, 1)} steps",
    ]


def cost_line(summary: RunSummary) -> str:
    """What the run cost, and what a correct step and a horizon step cost."""
    economics = summary.economics
    if economics is None or economics.cost_usd is None:
        return "cost       unknown (no price for this model; set model.price to get one)"
    line = f"cost       {format_usd(economics.cost_usd)}"
    if economics.usd_per_correct_step is not None:
        line += f", {format_usd(economics.usd_per_correct_step)} per correct step"
    if economics.horizon_steps_per_usd is not None:
        line += f", {economics.horizon_steps_per_usd:,.1f} horizon steps per dollar"
    if economics.price is not None and economics.price.batch_multiplier is not None:
        line += f" (batch price: {economics.price.batch_multiplier:g} x list)"
    return line


def strategy_lines(summary: RunSummary) -> list[str]:
    """One line on what a voting strategy drew; nothing for a plain single-sample run."""
    block = summary.strategy
    if block is None or block.samples_per_turn.mean is None:
        return []
    per_turn = block.samples_per_turn
    if block.name == "single" and per_turn.max == 1:
        return []
    return [
        f"strategy   {block.label}: {per_turn.mean:.2f} samples per turn (p95 {per_turn.p95:g}), "
        f"red flags {100 * (block.red_flag_rate or 0):.1f}%, capped turns {block.capped_turns}, "
        f"mean vote margin {fmt(block.vote_margin.mean, 2)}"
    ]


def format_table(summary: RunSummary, run_dir: Path, report_turns: Sequence[int]) -> str:
    """A short human-readable account of a run, printed when it ends."""
    label = summary.model + ("  [SIMULATED executor, not a model]" if summary.simulated else "")
    lines = [
        f"model      {label}",
        f"task       dict-sum, K={summary.k}, mode={summary.mode}, "
        f"{summary.episodes} episodes x {summary.turns} turns ({summary.status})",
    ]
    if summary.note:
        lines.append(f"note       {summary.note}")
    h = summary.horizon
    if h is None:
        history = summary.history
        lines.append(
            f"history    {history.source} (rate {history.rate}): task accuracy "
            "and horizon do not apply; see turn accuracy"
        )
    else:
        lines += _horizon_lines(summary, h)
    target = summary.history.target_turn
    shown_turns = sorted({*report_turns, *([target] if target else [])})
    lines += ["", f"{'turn':>6} {'turn acc':>9} {'task acc':>9} {'index acc':>10}"]
    measured = [
        t
        for t in shown_turns
        if 1 <= t <= summary.turns and summary.index_accuracy[t - 1] is not None
    ]
    for turn in measured:
        i = turn - 1
        lines.append(
            f"{turn:>6} {fmt(summary.turn_accuracy[i]):>9} "
            f"{fmt(summary.task_accuracy[i]):>9} {fmt(summary.index_accuracy[i]):>10}"
        )
    spent = summary.tokens_spent
    replayed = (
        f", replayed from cache {summary.tokens_replayed:,}" if summary.tokens_replayed else ""
    )
    lines += [
        "",
        *strategy_lines(summary),
        f"errors     format {summary.format_errors}, provider {summary.provider_errors}, "
        f"context exceeded {summary.context_exceeded}, retries {summary.retries}",
        *taxonomy_lines(summary, shown_turns),
        *([f"warning    {warning}"] if (warning := drift_warning(summary.format_drift)) else []),
        f"tokens     spent: prompt {spent.prompt_tokens:,}, completion {spent.completion_tokens:,}"
        + (" (estimated)" if spent.estimated else "")
        + replayed,
        cost_line(summary),
        *limit_line(summary),
        f"files      {run_dir / TURNS_FILE}",
        f"           {run_dir / SUMMARY_FILE}",
    ]
    return "\n".join(lines)


def limit_line(summary: RunSummary) -> list[str]:
    """What ``run.concurrency=auto`` did, in one line (none for a fixed limit)."""
    block = summary.concurrency
    if block is None:
        return []
    return [
        f"limit      auto: {block.min_limit}-{block.max_limit} requests in flight, "
        f"{block.overloads_429} x 429, {block.pauses} pauses ({block.paused_s:g} s)"
    ]
