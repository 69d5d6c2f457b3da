"""Deciding, while a run is under way, that its horizon is already known well enough.

Used by ``stop.when_decided``: after enough finished episodes, the run stops starting new
ones once (a) at some length the whole 95% interval of task accuracy lies below ``s`` (the
crossing has certainly happened) and (b) the horizon's bootstrap interval is as narrow as
asked. Combined with ``stop.after_failure`` this measures H_s at a fraction of the tokens of
a fixed-length run.
"""

from __future__ import annotations

import warnings

import numpy as np

from harness.metrics import column_means, task_correctness
from harness.statistics import (
    crossing_points,
    episode_weights,
    percentile_interval,
    weighted_column_means,
)


def horizon_decided(
    index_correct: np.ndarray,
    *,
    k: int,
    s: float,
    precision: float,
    rng: np.random.Generator,
    resamples: int = 200,
) -> bool:
    """True when finished episodes (rows; NaN = not run) pin H_s down as asked."""
    episodes, turns = index_correct.shape
    if episodes < 2:
        return False
    task = task_correctness(index_correct)
    boot = weighted_column_means(task, episode_weights(rng, episodes, resamples))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # lengths no episode reached
        upper = np.nanpercentile(boot, 97.5, axis=0)
    if not np.any(upper < s):
        return False
    lengths = np.arange(1, turns + 1, dtype=np.float64) * k
    point, censored = crossing_points(column_means(task)[None, :], lengths, s)
    interval = percentile_interval(crossing_points(boot, lengths, s)[0])
    if censored[0] or interval is None or point[0] <= 0:
        return False
    return (interval[1] - interval[0]) / 2.0 <= precision * point[0]
