"""Why turn accuracy falls: a length effect and a history (self-conditioning) effect.

Over every scored turn of an own-history run, a logistic regression of "this turn's update is
wrong" (not turn-correct) on ln(turn) and on the share of wrong answers among the earlier
answers the model was shown:

    logit P(update wrong) = a + length_effect * ln(turn) + history_effect * wrong_share

Proposition 1 (independent errors at a constant rate) predicts both effects to be 0. A
positive length effect means errors grow with the turn number whatever the history shows
(long context); a positive history effect means errors grow with the model's own visible
mistakes (self-conditioning), measured without an injected-history experiment. The share
counts the earlier scored turns the model was sent: all of them, or under ``history.window``
the last N (a mistake that has left the window can no longer condition the model).

Intervals come from the episode bootstrap, by a one-step Newton update from the full-data fit
for each resample: beta_r = beta + H_r^-1 g_r, with g_r and H_r the score and information
summed over the resampled episodes. That is asymptotically the same as refitting every
resample (the "one-step" or estimating-function bootstrap), and turns a thousand fits over a
million rows into two (resamples x episodes) matrix products of per-episode sums.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from harness.analysis.statistics import (
    logistic,
    logistic_irls,
    normal_two_sided_p,
    percentile_interval,
)

EFFECTS = ("length_effect", "history_effect")


def regression_rows(
    turn_correct: np.ndarray, index_correct: np.ndarray, window: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Design (rows x 3: 1, ln turn, wrong share), response (update wrong) and episode per row.

    Rows are the turns with a turn score, in episode-major order. ``window``: the run's
    ``history.window`` (the share is over the last ``window`` turns; None: over all).
    """
    scored = ~np.isnan(index_correct)
    wrong = np.where(scored, index_correct == 0.0, False).astype(np.float64)
    wrong_before = _sum_over_previous(wrong, window)
    shown_before = _sum_over_previous(scored.astype(np.float64), window)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(shown_before > 0, wrong_before / np.maximum(shown_before, 1), 0.0)
    rows = ~np.isnan(turn_correct)
    episode, turn = np.nonzero(rows)
    design = np.column_stack([np.ones(episode.size), np.log(turn + 1.0), share[episode, turn]])
    return design, 1.0 - turn_correct[episode, turn], episode


def _sum_over_previous(values: np.ndarray, window: int | None) -> np.ndarray:
    """Per (episode, turn t): the sum of ``values`` over turns t - window to t - 1 (or all)."""
    before = np.cumsum(values, axis=1) - values
    if window is None or window >= values.shape[1]:
        return before
    left_window = np.zeros_like(before)  # the sum over the turns before t - window
    left_window[:, window:] = before[:, :-window]
    return before - left_window


def error_dynamics(
    turn_correct: np.ndarray,
    index_correct: np.ndarray,
    weights: np.ndarray | None,
    window: int | None = None,
) -> dict[str, Any] | None:
    """``error_dynamics`` of summary.json; None when the fit is not identified.

    Without bootstrap weights the intervals are the model-based (Wald) ones. ``window`` as
    for :func:`regression_rows`.
    """
    design, y, episode = regression_rows(turn_correct, index_correct, window)
    if y.size < 3 or np.ptp(design[:, 1]) == 0 or np.ptp(design[:, 2]) == 0:
        return None
    fitted = logistic_irls(design, y, np.ones_like(y), start=_rough_start(design, y))
    if fitted is None:
        return None
    beta, information = fitted
    if weights is None:
        se = np.sqrt(np.diag(np.linalg.inv(information)))
        intervals = [(b - 1.959964 * e, b + 1.959964 * e) for b, e in zip(beta, se, strict=True)]
    else:
        boot = one_step_bootstrap(design, y, episode, beta, weights)
        se = np.nanstd(boot, axis=0, ddof=1)
        intervals = [percentile_interval(boot[:, j]) for j in range(beta.size)]
    block: dict[str, Any] = {}
    for j, name in enumerate(EFFECTS, start=1):
        z = beta[j] / se[j] if se[j] > 0 else math.inf
        block[name] = {
            "estimate": float(beta[j]),
            "ci95": list(intervals[j]) if intervals[j] else None,
            "p_value": normal_two_sided_p(z),
        }
    block["rows"] = int(y.size)
    block["model"] = "logit P(update wrong) = a + length_effect ln(turn) + history_effect share"
    return block


def _rough_start(design: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """The fit of every 16th row: near the full fit, so the full one needs 2-3 iterations."""
    if y.size < 160_000:
        return None
    rough = logistic_irls(design[::16], y[::16], np.ones(design[::16].shape[0]))
    return None if rough is None else rough[0]


def one_step_bootstrap(
    design: np.ndarray,
    y: np.ndarray,
    episode: np.ndarray,
    beta: np.ndarray,
    weights: np.ndarray,
) -> np.ndarray:
    """Coefficients of every resample (resamples x parameters) by one Newton step from beta.

    Rows must be in episode-major order (as :func:`regression_rows` gives them): the
    per-episode sums are then one ``np.add.reduceat`` over contiguous blocks.
    """
    params = design.shape[1]
    mu = logistic(design @ beta)
    residual, curvature = y - mu, mu * (1.0 - mu)
    pairs = [(i, j) for i in range(params) for j in range(i, params)]
    terms = np.empty((y.size, params + len(pairs)))
    for i in range(params):
        np.multiply(design[:, i], residual, out=terms[:, i])
    for column, (i, j) in enumerate(pairs, start=params):
        np.multiply(design[:, i] * design[:, j], curvature, out=terms[:, column])
    starts = np.flatnonzero(np.r_[True, episode[1:] != episode[:-1]])
    per_episode = np.zeros((weights.shape[1], terms.shape[1]))
    per_episode[episode[starts]] = np.add.reduceat(terms, starts, axis=0)
    summed = weights @ per_episode
    info = np.empty((weights.shape[0], params, params))
    for column, (i, j) in enumerate(pairs, start=params):
        info[:, i, j] = info[:, j, i] = summed[:, column]
    out = np.full((weights.shape[0], params), np.nan)
    good = np.linalg.matrix_rank(info) == params
    out[good] = beta + np.linalg.solve(info[good], summed[good, :params, None])[:, :, 0]
    return out


def injected_history_effect(
    rates: np.ndarray, errors: np.ndarray, trials: np.ndarray
) -> dict[str, Any] | None:
    """The injected-history experiment's estimate on the scale of ``history_effect``.

    Across runs with injected error rates r (the share of wrong answers shown), a logistic
    regression of the target turn's update errors on r: its slope is the change in log-odds
    of a wrong update from no wrong answer shown to all wrong, the quantity the
    observational ``history_effect`` estimates from an own-history run. Model-based (Wald)
    interval: the runs are independent, and each target-turn answer is one trial.
    """
    keep = trials > 0
    if np.unique(rates[keep]).size < 2:
        return None
    design = np.column_stack([np.ones(keep.sum()), rates[keep]])
    fitted = logistic_irls(design, errors[keep], trials[keep])
    if fitted is None:
        return None
    beta, information = fitted
    se = math.sqrt(np.linalg.inv(information)[1, 1])
    return {
        "estimate": float(beta[1]),
        "ci95": [float(beta[1] - 1.959964 * se), float(beta[1] + 1.959964 * se)],
        "p_value": normal_two_sided_p(beta[1] / se),
    }
