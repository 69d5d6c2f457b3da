"""Interval coverage of H_0.5, 20 seeds (bench/bench_coverage.py runs 200 and BENCHMARKS.md
records them: 0.955 complete, 0.955 with half the episodes censored)."""

import numpy as np
import pytest

from harness.analysis.metrics import ScoreMatrices, horizon, task_correctness
from harness.analysis.statistics import crossing_points
from providers.simulated import SimulatedConfig
from testing.simulated_scores import simulate_scores


@pytest.mark.slow
def test_the_interval_covers_the_true_crossing_in_complete_and_censored_runs():
    lengths = np.arange(1, 41, dtype=np.float64)
    truth = crossing_points((0.95**lengths)[None, :], lengths, 0.5)[0][0]
    assert truth == pytest.approx(13.52, abs=0.005)
    covered = {"complete": 0, "censored": 0}
    for seed in range(20):
        index = simulate_scores(SimulatedConfig(p=0.95), episodes=200, turns=40, seed=seed)
        index = index.index_correct
        rng = np.random.default_rng(10_000 + seed)
        cut = index.copy()
        for e in np.flatnonzero(rng.random(200) < 0.5):
            cut[e, rng.integers(1, 40) :] = np.nan
        for name, matrix in (("complete", index), ("censored", cut)):
            scores = ScoreMatrices(matrix, matrix, task_correctness(matrix), 1)
            estimate, _ = horizon(scores, 0.5, resamples=1000, rng=np.random.default_rng(seed))
            covered[name] += estimate.ci95[0] <= truth <= estimate.ci95[1]
    # at 95% nominal coverage, 16 or more of 20 has probability 0.997 (binomial)
    assert covered["complete"] >= 16 and covered["censored"] >= 16, covered
