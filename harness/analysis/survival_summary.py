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
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from harness.analysis.dynamics import error_dynamics
from harness.analysis.hazard import hazard_block, hazard_trend
from harness.analysis.metrics import Horizon, ScoreMatrices
from harness.analysis.statistics import crossing_points, percentile_interval
from harness.analysis.survival import SurvivalFit


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ThresholdHorizon(_Part):
    """H_s at one threshold, read off the Kaplan-Meier curve."""

    s: float
    """Success threshold."""
    steps: float | None
    """The crossing; the last length observed when ``censored`` (a lower bound)."""
    turns: float | None
    """The same in turns."""
    ci95: list[float] | None
    """Episode-bootstrap interval (None when censored or without resamples)."""
    censored: bool
    """The curve never fell below ``s`` while episodes were at risk."""
    at_risk: int | None
    """Episodes at risk where the horizon was read off."""
    reliable: bool
    """At least 10 episodes at risk there."""


class HorizonRatio(_Part):
    """H_0.8 / H_0.5 observed, against what a constant hazard gives."""

    observed: float | None
    """None when either horizon is censored."""
    ci95: list[float] | None
    """Episode-bootstrap interval of the ratio."""
    constant_hazard: float
    """ln 0.8 / ln 0.5 = 0.32 (Proposition 1, any p)."""


class Hazard(_Part):
    """Per-step hazard of first failure at each length."""

    steps: list[float]
    """Lengths L = turn x K."""
    per_step: list[float | None]
    """h(L) = P(first failure at L | right through L - 1); None where nobody was at risk."""
    ci95: list[list[float | None]] | None
    """Episode-bootstrap bands."""


class HazardTrend(_Part):
    """Test of Proposition 1's constant hazard against one changing with length."""

    slope: float
    """Slope of logit(turn hazard) on ln(steps)."""
    ci95: list[float]
    """Wald interval from the GLM's information."""
    p_value: float
    """Likelihood-ratio test against the constant hazard."""
    verdict: Literal["rising", "flat", "falling"]
    """rising / falling when p < 0.05, else flat."""
    model: str
    """The fitted model in words."""


class Effect(_Part):
    """One regression coefficient (log-odds of a wrong update)."""

    estimate: float
    """The coefficient."""
    ci95: list[float] | None
    """Episode-bootstrap interval."""
    p_value: float
    """Two-sided, from the bootstrap standard error."""


class ErrorDynamics(_Part):
    """Length and history (self-conditioning) effects on turn errors."""

    length_effect: Effect
    """Per unit of ln(turn)."""
    history_effect: Effect
    """From no wrong answer shown to all shown answers wrong."""
    rows: int
    """Scored turns in the regression."""
    model: str
    """The fitted model in words."""


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
    scores: ScoreMatrices,
    estimate: Horizon,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    window: int | None = None,
) -> dict[str, Any]:
    """The summary fields listed in the module docstring (None values when nothing scored).

    ``window`` is the run's ``history.window``: the turns the error dynamics count as shown.
    """
    fit = estimate.fit
    if fit is None:
        return dict(EMPTY)
    lengths = scores.lengths
    trend = hazard_trend(fit.at_risk, fit.events, scores.k)
    dynamics = error_dynamics(scores.turn_correct, scores.index_correct, fit.weights, window)
    return {
        "at_risk": [int(n) for n in fit.at_risk],
        "horizons": [
            ThresholdHorizon.model_validate(fit.horizon(lengths, s).as_dict(scores.k))
            for s in thresholds
        ],
        "horizon_ratio": HorizonRatio.model_validate(horizon_ratio(fit, lengths)),
        "hazard": Hazard.model_validate(hazard_block(fit, scores.k)),
        "hazard_trend": None if trend is None else HazardTrend.model_validate(trend),
        "error_dynamics": None if dynamics is None else ErrorDynamics.model_validate(dynamics),
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
