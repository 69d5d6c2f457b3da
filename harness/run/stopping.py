"""Deciding, while a run is under way, that more turns or episodes would not change H_s.

Used by ``stop.when_decided`` (best with ``stop.after_failure``), in two steps:

1. Once the whole 95% interval of task accuracy lies below ``s`` at some length L, the
   crossing has certainly happened by L: no episode needs turns past L. Task accuracy at
   lengths up to L does not depend on later turns, so capping episodes there leaves the
   horizon estimate exactly as a full-length run of the same episodes would give it.
2. Once the horizon's bootstrap interval is as narrow as asked, the run needs no more
   episodes and stops.

Only a *prefix* of episodes (by index) whose episodes have all finished is used: the first
episodes to finish are the ones that failed early, and deciding on them would bias the
estimate towards short horizons.
"""

from __future__ import annotations

import warnings

import numpy as np

from harness.analysis.metrics import column_means, task_correctness
from harness.analysis.statistics import (
    crossing_points,
    episode_weights,
    percentile_interval,
    weighted_column_means,
)


def _bootstrap_task_curves(
    index_correct: np.ndarray, rng: np.random.Generator, resamples: int
) -> tuple[np.ndarray, np.ndarray]:
    task = task_correctness(index_correct)
    weights = episode_weights(rng, index_correct.shape[0], resamples)
    return task, weighted_column_means(task, weights)


def decided_length(
    index_correct: np.ndarray, *, s: float, rng: np.random.Generator, resamples: int = 200
) -> int | None:
    """Turns after which task accuracy is below ``s`` with 95% confidence (None: not yet)."""
    if index_correct.shape[0] < 2:
        return None
    _, boot = _bootstrap_task_curves(index_correct, rng, resamples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # lengths no episode reached
        upper = np.nanpercentile(boot, 97.5, axis=0)
    below = np.flatnonzero(upper < s)
    return int(below[0]) + 1 if below.size else None


def horizon_decided(
    index_correct: np.ndarray,
    *,
    k: int,
    s: float,
    precision: float,
    rng: np.random.Generator,
    resamples: int = 200,
) -> bool:
    """True when the episodes (rows; NaN = not run) pin H_s down to ``precision`` (relative)."""
    episodes, turns = index_correct.shape
    if episodes < 2:
        return False
    task, boot = _bootstrap_task_curves(index_correct, rng, resamples)
    lengths = np.arange(1, turns + 1, dtype=np.float64) * k
    point, censored = crossing_points(column_means(task)[None, :], lengths, s)
    interval = percentile_interval(crossing_points(boot, lengths, s)[0])
    if censored[0] or interval is None or point[0] <= 0:
        return False
    return (interval[1] - interval[0]) / 2.0 <= precision * point[0]
