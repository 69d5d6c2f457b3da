"""Small pure statistical functions over arrays.

Every function takes plain numpy arrays and, where it draws, a ``numpy.random.Generator``
passed in by the caller, so results are reproducible and the functions are testable alone.
Bootstrap resampling is over whole episodes (rows): turns within an episode are correlated,
and resampling them independently would give intervals that are too narrow.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np


def episode_weights(rng: np.random.Generator, episodes: int, resamples: int) -> np.ndarray:
    """How often each episode is drawn in each bootstrap resample, shape (resamples, episodes).

    Counts from a multinomial are equivalent to drawing episode indices with replacement, and
    turn every resampled mean into one matrix product instead of a loop.
    """
    return rng.multinomial(episodes, np.full(episodes, 1.0 / episodes), size=resamples).astype(
        np.float64
    )


def weighted_column_means(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-column means of ``values`` (episodes x turns, NaN = not scored) for each weight row.

    Returns shape (resamples, turns); a column with no scored episode in a resample is NaN.
    """
    scored = ~np.isnan(values)
    if scored.all():
        # Every row's denominator is then its total weight: one matrix product, not two.
        # (Sums of integer counts are exact, so the result is the same to the last bit.)
        return (weights @ values) / weights.sum(axis=1, keepdims=True)
    filled = np.where(scored, values, 0.0)
    numerator = weights @ filled
    denominator = weights @ scored.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return numerator / denominator


def column_percentiles(samples: np.ndarray, q: list[float]) -> np.ndarray:
    """``np.nanpercentile(samples, q, axis=0)``, shape (len(q), columns), but fast.

    ``nanpercentile`` loops in Python over the columns once any NaN is present; columns
    without NaN get the same result from ``np.percentile`` in one call, so only the few with
    NaN (no scored episode drawn) go through the loop. All-NaN columns give NaN.
    """
    nan_columns = np.isnan(samples).any(axis=0)
    out = np.empty((len(q), samples.shape[1]))
    out[:, ~nan_columns] = np.percentile(samples[:, ~nan_columns], q, axis=0)
    if nan_columns.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            out[:, nan_columns] = np.nanpercentile(samples[:, nan_columns], q, axis=0)
    return out


def crossing_points(
    curves: np.ndarray, lengths: np.ndarray, s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Where each curve first falls below ``s``, linearly interpolated.

    ``curves`` has shape (n, T): accuracy at ``lengths`` (increasing, > 0). Length 0 counts as
    accuracy 1. Returns (crossing lengths, censored flags); a censored curve never fell below
    ``s`` and gets the last length it has a value at as a lower bound (a Kaplan-Meier curve is
    NaN beyond the last turn with an episode at risk: nothing is known there, so the run's
    configured length would claim too much). NaN points between known ones are carried
    forward from the previous point.
    """
    curves = np.atleast_2d(np.asarray(curves, dtype=np.float64))
    full = np.concatenate([np.ones((curves.shape[0], 1)), curves], axis=1)
    # carry the last known value over unscored points
    mask = np.isnan(full)
    last_known = full.shape[1] - 1 - np.argmax(~mask[:, ::-1], axis=1)
    if mask.any():
        index = np.where(~mask, np.arange(full.shape[1]), 0)
        np.maximum.accumulate(index, axis=1, out=index)
        full = np.take_along_axis(full, index, axis=1)
    all_lengths = np.concatenate([[0.0], np.asarray(lengths, dtype=np.float64)])
    below = full < s
    censored = ~below.any(axis=1)
    first = np.where(censored, full.shape[1] - 1, below.argmax(axis=1))
    first = np.maximum(first, 1)
    rows = np.arange(full.shape[0])
    a0, a1 = full[rows, first - 1], full[rows, first]
    l0, l1 = all_lengths[first - 1], all_lengths[first]
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(a0 > a1, (a0 - s) / (a0 - a1), 0.0)
    crossing = np.where(censored, all_lengths[last_known], l0 + fraction * (l1 - l0))
    return crossing, censored


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    """The central ``level`` percentile interval of bootstrap samples (NaNs ignored)."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(finite, [tail, 100.0 - tail])
    return float(lo), float(hi)


def logistic(eta: np.ndarray) -> np.ndarray:
    """The inverse logit 1 / (1 + e^-eta), elementwise.

    Far in the tails e^-eta overflows to inf and the result is the exact limit 0, so the
    overflow is not worth numpy's warning.
    """
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-eta))


def logistic_fit(
    x: np.ndarray, successes: np.ndarray, trials: np.ndarray, iterations: int = 50
) -> tuple[float, float] | None:
    """Binomial logistic regression ``P(success) = sigmoid(a + b x)`` by Newton's method.

    Returns ``(a, b)``, or None when the data cannot identify a slope (one x value, or all
    successes / all failures: perfect separation has no finite maximum).
    """
    keep = trials > 0
    x, successes, trials = x[keep], successes[keep], trials[keep]
    if x.size < 2 or np.ptp(x) == 0 or successes.sum() in (0, trials.sum()):
        return None
    design = np.column_stack([np.ones_like(x), x])
    beta = np.zeros(2)
    for _ in range(iterations):
        p = logistic(design @ beta)
        gradient = design.T @ (successes - trials * p)
        weight = trials * p * (1.0 - p)
        hessian = design.T @ (design * weight[:, None])
        try:
            step = np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:
            return None
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    if not np.all(np.isfinite(beta)):
        return None
    return float(beta[0]), float(beta[1])


def logistic_crossing(intercept: float, slope: float, s: float) -> float | None:
    """The x where a fitted logistic curve equals ``s`` (None when it does not decrease)."""
    if slope >= 0:
        return None
    return (math.log(s / (1.0 - s)) - intercept) / slope


def independent_error_horizon(p: float, s: float) -> float | None:
    """Proposition 1: with per-step accuracy ``p`` and no recovery, success is ``p**H``.

    Returns the H where ``p**H = s``, or None when ``p`` is 0 or 1 (no finite horizon).
    """
    if not 0.0 < p < 1.0:
        return None
    return math.log(s) / math.log(p)


def logistic_irls(
    design: np.ndarray,
    events: np.ndarray,
    trials: np.ndarray,
    iterations: int = 50,
    start: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Binomial logistic regression by iteratively reweighted least squares (Newton).

    ``design`` is (rows, parameters), ``events`` of ``trials`` per row (trials may be frequency
    weights of 0/1 rows). Returns the coefficients and the observed information matrix (its
    inverse is the model-based covariance), or None when the fit does not converge to finite
    values (separation). Written here rather than taken from statsmodels: the fits needed are
    two- and three-parameter models that run inside every summary, where a 20 ms import and
    per-call model objects would cost more than the whole fit; the tests check it against a
    closed form and a brute-force optimum. ``start`` (e.g. the fit of a subsample) saves
    iterations over many rows.
    """
    keep = trials > 0
    x, y, n = design, events, trials
    if not keep.all():  # a copy of a million rows costs as much as an iteration
        x, y, n = design[keep], events[keep], trials[keep]
    if x.shape[0] < x.shape[1]:
        return None
    beta = np.zeros(x.shape[1])
    # Start at the pooled rate: one Newton step from there is usually most of the way.
    pooled = y.sum() / n.sum()
    if not 0.0 < pooled < 1.0:
        return None
    beta[0] = math.log(pooled / (1.0 - pooled)) if np.all(x[:, 0] == 1.0) else 0.0
    if start is not None:
        beta = np.asarray(start, dtype=np.float64).copy()
    for _ in range(iterations):
        mu = logistic(x @ beta)
        gradient = x.T @ (y - n * mu)
        information = x.T @ (x * (n * mu * (1.0 - mu))[:, None])
        try:
            step = np.linalg.solve(information, gradient)
        except np.linalg.LinAlgError:
            return None
        if not np.all(np.isfinite(step)):
            return None
        if np.max(np.abs(step)) < 1e-9:
            # Newton converges quadratically: the remaining error is far below this step, and
            # the information at beta differs from the one just computed by as little.
            return beta + step, information
        beta = beta + step
    return None


def binomial_log_likelihood(events: np.ndarray, trials: np.ndarray, mu: np.ndarray) -> float:
    """Log likelihood of ``events`` of ``trials`` at probabilities ``mu`` (no binomial terms).

    The binomial coefficients cancel in a likelihood ratio, so they are left out.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(events > 0, events * np.log(mu), 0.0) + np.where(
            trials - events > 0, (trials - events) * np.log1p(-mu), 0.0
        )
    return float(terms.sum())


def chi2_1_sf(statistic: float) -> float:
    """P(X > statistic) for a chi-square variable with one degree of freedom (closed form)."""
    return math.erfc(math.sqrt(max(statistic, 0.0) / 2.0))


def normal_two_sided_p(z: float) -> float:
    """Two-sided p-value of a standard normal statistic."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def bootstrap_p_value(samples: np.ndarray, null: float = 0.0) -> float | None:
    """Two-sided bootstrap p-value of "the statistic equals ``null``" (percentile method).

    Twice the smaller share of resamples on either side of ``null``, at least one resample's
    worth (a p-value of 0 would claim more than the resamples can show), at most 1.
    """
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return None
    below = np.mean(finite <= null)
    above = np.mean(finite >= null)
    return float(min(1.0, max(2.0 * min(below, above), 1.0 / finite.size)))


def finite_or_none(value: float) -> float | None:
    """JSON's spelling of a number: NaN and infinities (not scored, undefined) become None."""
    return float(value) if np.isfinite(value) else None


def nan_for_none(values: Sequence[float | None] | np.ndarray) -> np.ndarray:
    """The inverse of :func:`finite_or_none` over a sequence: None becomes NaN."""
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
