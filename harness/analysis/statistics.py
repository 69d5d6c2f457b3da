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
    ``s`` and gets the last length as a lower bound. NaN points (nothing scored) are carried
    forward from the previous point.
    """
    curves = np.atleast_2d(np.asarray(curves, dtype=np.float64))
    full = np.concatenate([np.ones((curves.shape[0], 1)), curves], axis=1)
    # carry the last known value over unscored points
    mask = np.isnan(full)
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
    crossing = np.where(censored, all_lengths[-1], l0 + fraction * (l1 - l0))
    return crossing, censored


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    """The central ``level`` percentile interval of bootstrap samples (NaNs ignored)."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(finite, [tail, 100.0 - tail])
    return float(lo), float(hi)


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
        p = 1.0 / (1.0 + np.exp(-(design @ beta)))
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


def finite_or_none(value: float) -> float | None:
    """JSON's spelling of a number: NaN and infinities (not scored, undefined) become None."""
    return float(value) if np.isfinite(value) else None


def nan_for_none(values: Sequence[float | None] | np.ndarray) -> np.ndarray:
    """The inverse of :func:`finite_or_none` over a sequence: None becomes NaN."""
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
