"""Hazard of first failure per step, and a test of Proposition 1's constant hazard.

h(L) = P(first failure at step L | right through step L - 1). Proposition 1 (constant per-step
accuracy p, no recovery) says h = 1 - p at every length. Episodes still at risk have seen no
error of their own, so a hazard that rises with length is a *length* (long-context) effect,
not self-conditioning.

A turn of K keys is observed as one trial, so the per-turn hazard d_t / n_t (the Kaplan-Meier
factors) is turned into a per-step one, 1 - (1 - d_t / n_t) ** (1 / K), at L = t K.

The trend test is a binomial GLM of "this at-risk turn is the first failure" on log length,
against the intercept-only model by a likelihood-ratio test. The discrete-time hazard
likelihood is the product over (episode, turn) at-risk trials of exactly these Bernoulli
terms, so the GLM on the aggregated counts (d_t of n_t) is the right likelihood with no
within-episode correlation left to correct, and its information matrix gives the slope's
interval.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from harness.analysis.statistics import (
    binomial_log_likelihood,
    chi2_1_sf,
    column_percentiles,
    logistic,
    logistic_irls,
)
from harness.analysis.survival import SurvivalFit

TREND_ALPHA = 0.05
"""Level of the likelihood-ratio test below which the hazard is called rising or falling."""


def per_step_hazard(at_risk: np.ndarray, events: np.ndarray, k: int) -> np.ndarray:
    """Per-step hazard per turn (NaN where nobody is at risk); any leading axes are kept."""
    with np.errstate(invalid="ignore", divide="ignore"):
        turn_hazard = np.where(at_risk > 0, events / at_risk, np.nan)
    return 1.0 - (1.0 - turn_hazard) ** (1.0 / k)


def hazard_block(fit: SurvivalFit, k: int) -> dict[str, Any]:
    """``hazard`` of summary.json: per-step hazard at each length, with bootstrap bands."""
    values = per_step_hazard(fit.at_risk, fit.events, k)
    ci95 = None
    if fit.boot_at_risk is not None:
        boot = per_step_hazard(fit.boot_at_risk, fit.boot_events, k)
        lo, hi = column_percentiles(boot, [2.5, 97.5])
        ci95 = [[_finite(a), _finite(b)] for a, b in zip(lo, hi, strict=True)]
    return {
        "steps": [float(t * k) for t in range(1, values.size + 1)],
        "per_step": [_finite(v) for v in values],
        "ci95": ci95,
    }


def hazard_trend(at_risk: np.ndarray, events: np.ndarray, k: int) -> dict[str, Any] | None:
    """Slope of logit(turn hazard) on log length, its 95% interval, LRT p-value, verdict.

    None when the data cannot say (no failure, or failures at fewer than two lengths with
    episodes at risk).
    """
    lengths = np.arange(1, at_risk.size + 1, dtype=np.float64) * k
    keep = at_risk > 0
    if keep.sum() < 2 or events.sum() == 0 or events.sum() == at_risk[keep].sum():
        return None
    design = np.column_stack([np.ones(keep.sum()), np.log(lengths[keep])])
    y, n = events[keep], at_risk[keep]
    fitted = logistic_irls(design, y, n)
    if fitted is None:
        return None
    beta, information = fitted
    mu1 = logistic(design @ beta)
    mu0 = np.full_like(y, y.sum() / n.sum())
    statistic = 2.0 * (binomial_log_likelihood(y, n, mu1) - binomial_log_likelihood(y, n, mu0))
    p_value = chi2_1_sf(statistic)
    se = math.sqrt(np.linalg.inv(information)[1, 1])
    slope = float(beta[1])
    verdict = "flat"
    if p_value < TREND_ALPHA:
        verdict = "rising" if slope > 0 else "falling"
    return {
        "slope": slope,
        "ci95": [slope - 1.959964 * se, slope + 1.959964 * se],
        "p_value": p_value,
        "verdict": verdict,
        "model": "logit(first-failure hazard per turn) = a + slope * ln(steps)",
    }


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
