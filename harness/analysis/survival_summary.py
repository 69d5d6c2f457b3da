"""The survival-analysis parts of a run's summary, as one self-contained block.

``at_risk`` (episodes at risk per turn), ``horizons`` (H_s at several thresholds),
``horizon_ratio`` (H_0.8 / H_0.5 against a constant hazard's ln 0.8 / ln 0.5 = 0.32),
``hazard`` and ``hazard_trend`` (first-failure hazard and the test of Proposition 1) and
``error_dynamics`` (length and history effects on turn errors). All of them read the one
Kaplan-Meier fit and bootstrap resample the headline horizon used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from harness.analysis.dynamics import error_dynamics
from harness.analysis.hazard import hazard_block, hazard_trend
from harness.analysis.metrics import Horizon, ScoreMatrices
from harness.analysis.statistics import crossing_points, percentile_interval
from harness.analysis.survival import SurvivalFit

DEFAULT_THRESHOLDS = (0.5, 0.8, 0.9)
RATIO_THRESHOLDS = (0.8, 0.5)
CONSTANT_HAZARD_RATIO = math.log(0.8) / math.log(0.5)
"""H_0.8 / H_0.5 under a constant per-step hazard: success p^L gives H_s = ln s / ln p."""

EMPTY: dict[str, Any] = {
    "at_risk": None,
    "horizons": [],
    "horizon_ratio": None,
    "hazard": None,
    "hazard_trend": None,
    "error_dynamics": None,
}


def survival_blocks(
    scores: ScoreMatrices, estimate: Horizon, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> dict[str, Any]:
    """The summary keys listed in the module docstring (None values when nothing scored)."""
    fit = estimate.fit
    if fit is None:
        return dict(EMPTY)
    lengths = scores.lengths
    return {
        "at_risk": [int(n) for n in fit.at_risk],
        "horizons": [fit.horizon(lengths, s).as_dict(scores.k) for s in thresholds],
        "horizon_ratio": horizon_ratio(fit, lengths),
        "hazard": hazard_block(fit, scores.k),
        "hazard_trend": hazard_trend(fit.at_risk, fit.events, scores.k),
        "error_dynamics": error_dynamics(scores.turn_correct, scores.index_correct, fit.weights),
    }


def horizon_ratio(fit: SurvivalFit, lengths: np.ndarray) -> dict[str, Any]:
    """Observed H_0.8 / H_0.5 with its bootstrap interval, beside the constant-hazard 0.32.

    Under Proposition 1 the ratio is ln 0.8 / ln 0.5 whatever p is; below it, early failures
    are more common than a constant hazard allows (a hazard falling with length), above it
    they are rarer (a rising hazard). None as observed when either horizon is censored.
    """
    high, low = (fit.horizon(lengths, s) for s in RATIO_THRESHOLDS)
    observed = ci95 = None
    if not (high.censored or low.censored) and high.steps is not None and low.steps:
        observed = high.steps / low.steps
        if fit.boot_curves is not None:
            num = crossing_points(fit.boot_curves, lengths, RATIO_THRESHOLDS[0])[0]
            den = crossing_points(fit.boot_curves, lengths, RATIO_THRESHOLDS[1])[0]
            with np.errstate(invalid="ignore", divide="ignore"):
                interval = percentile_interval(num / den)
            ci95 = list(interval) if interval else None
    return {"observed": observed, "ci95": ci95, "constant_hazard": CONSTANT_HAZARD_RATIO}
