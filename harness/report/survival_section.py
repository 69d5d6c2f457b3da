"""The survival part of a run's report.

The hazard figure, horizons at several thresholds, and what the hazard trend and the
error-dynamics regression say beside Proposition 1.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from harness.analysis.run_summary import RunSummary
from harness.analysis.survival_summary import CONSTANT_HAZARD_RATIO, Effect, ErrorDynamics
from harness.report.run_figures import DPI, FIGURE_SIZE, literal, run_description

HAZARD_FIGURE = "hazard.png"


def _floats(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def hazard_figure(summary: RunSummary) -> Figure:
    """Per-step hazard of first failure against length, with its band and 1 - p_hat."""
    hazard = summary.hazard
    steps = np.asarray(hazard.steps, dtype=np.float64)
    values = _floats(hazard.per_step)
    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")
    ax = figure.add_subplot()
    ax.plot(steps, values, color="C0", linewidth=1.4, label="hazard h(L)")
    if hazard.ci95:
        lo = _floats([pair[0] for pair in hazard.ci95])
        hi = _floats([pair[1] for pair in hazard.ci95])
        known = np.isfinite(lo) & np.isfinite(hi)
        ax.fill_between(
            steps, np.where(known, lo, 0), np.where(known, hi, 0), where=known, color="C0",
            alpha=0.2, linewidth=0, label="95% CI",
        )  # fmt: skip
    p_hat = summary.prop1.p_hat if summary.prop1 else None
    if p_hat is not None:
        ax.axhline(1 - p_hat, color="C3", linestyle="--", label="Prop. 1: constant 1 - p_hat")
    trend = summary.hazard_trend
    if trend:
        ax.plot([], [], " ", label=f"trend: {trend.verdict} (p = {trend.p_value:.2g})")
    ax.set_xlabel("task length L (steps = turns × K)")
    ax.set_ylabel("P(first failure at L | right through L - 1)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(literal(f"Hazard of first failure: {run_description(summary)}"))
    ax.legend(fontsize="small")
    return figure


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def _effect(effect: Effect) -> str:
    ci = effect.ci95
    ci_text = f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else ""
    return f"{effect.estimate:.3g}{ci_text} (p = {effect.p_value:.2g})"


def dynamics_sentence(dynamics: ErrorDynamics | None) -> str | None:
    """One sentence on the two effects beside Proposition 1's prediction (both 0)."""
    if not dynamics:
        return None
    return (
        "Proposition 1 predicts both effects to be 0 (independent errors at a constant rate): "
        f"the length effect {_effect(dynamics.length_effect)} is how much the log-odds of a "
        "wrong update grow per unit of ln(turn) whatever the history shows (long context), "
        f"the history effect {_effect(dynamics.history_effect)} how much they grow from no "
        "wrong answer shown to all shown answers wrong (self-conditioning)."
    )


def survival_section(summary: RunSummary, figure_uri: str | None) -> str:
    """HTML: horizons at each threshold, the hazard figure and trend, the error dynamics."""
    if summary.horizon is None or not summary.horizons:
        return ""
    rows = []
    for h in summary.horizons:
        if h.steps is None:
            value = "n/a"
        elif h.censored:
            value = f">= {h.steps:g} (censored)"
        else:
            value = f"{h.steps:.1f}" + (f" [{h.ci95[0]:.1f}, {h.ci95[1]:.1f}]" if h.ci95 else "")
        warn = "" if h.reliable else " unreliable: few episodes at risk"
        rows.append(
            f"<tr><td>{h.s:g}</td><td>{html.escape(value)}</td>"
            f"<td>{_num(h.at_risk)}{warn}</td></tr>"
        )
    ratio = summary.horizon_ratio
    ci = ratio.ci95 if ratio else None
    parts = [
        "<h2>Survival: thresholds, hazard, error dynamics</h2>",
        '<p class="muted">Task accuracy is the Kaplan-Meier estimate over episodes: an '
        "episode that stopped early (provider error, budget, interrupt) is censored after its "
        "last scored turn, not counted as failed.</p>",
        "<table><tr><th>s</th><th>H<sub>s</sub> steps [95% CI]</th>"
        "<th>episodes at risk there</th></tr>" + "".join(rows) + "</table>",
        f"<p>H<sub>0.8</sub> / H<sub>0.5</sub> = {_num(ratio.observed if ratio else None)}"
        + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "")
        + f"; a constant hazard gives ln 0.8 / ln 0.5 = {CONSTANT_HAZARD_RATIO:.3g}.</p>",
    ]
    if figure_uri:
        parts.append(f'<figure><img alt="hazard of first failure" src="{figure_uri}"></figure>')
    trend = summary.hazard_trend
    if trend:
        parts.append(
            f"<p>Hazard trend (binomial GLM on ln length, likelihood-ratio test): slope "
            f"{trend.slope:.3g} [{trend.ci95[0]:.3g}, {trend.ci95[1]:.3g}], "
            f"p = {trend.p_value:.2g}: <strong>{trend.verdict}</strong>. Episodes at risk "
            "have seen no error of their own, so a rising hazard is a length effect.</p>"
        )
    sentence = dynamics_sentence(summary.error_dynamics)
    if sentence:
        parts.append(f"<p>{html.escape(sentence)}</p>")
    return "\n".join(parts)


def self_conditioning_table(table: Any, summaries: dict[str, RunSummary]) -> Any:
    """Per model: the injected-history estimate beside the observational ``history_effect``.

    Both are changes in the log-odds of a wrong update from no wrong answer shown to all
    shown answers wrong: one by design (injected errors at rates r), one from an own-history
    run's regression. None unless some model has both.
    """
    import pandas as pd

    from harness.analysis.dynamics import injected_history_effect

    rows = []
    for model, group in table.groupby("model", sort=True):
        rewritten = group[group["history"].isin(["injected", "healed"])]
        own = group[group["history"] == "own"]
        observed = [
            summaries[run].error_dynamics.history_effect
            for run in own["run"]
            if summaries[run].error_dynamics is not None
        ]
        if rewritten["rate"].nunique() < 2 or not observed:
            continue
        accuracy = rewritten["target_turn_accuracy"].to_numpy(float)
        trials = rewritten["episodes"].to_numpy(float)
        injected = injected_history_effect(
            rewritten["rate"].to_numpy(float), (1 - accuracy) * trials, trials
        )
        if injected is None:
            continue
        for effect in observed:
            rows.append(
                {
                    "model": model,
                    "injected (by design)": injected["estimate"],
                    "injected 95% CI": _ci_text(injected["ci95"]),
                    "observational (own history)": effect.estimate,
                    "observational 95% CI": _ci_text(effect.ci95),
                }
            )
    return pd.DataFrame(rows) if rows else None


def _ci_text(ci: list[float] | None) -> str:
    return "n/a" if not ci else f"[{ci[0]:.3g}, {ci[1]:.3g}]"
