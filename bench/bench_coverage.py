"""Coverage of the 95% interval of H_0.5: the test of the whole estimator.

Over 200 seeds of the simulated executor's error model at p = 0.95 (200 episodes x 40 turns,
K = 1, drawn by ``testing.simulated_scores``), the share of runs whose bootstrap interval
covers the true crossing: p^L at L = 1..40, read off with the summary's own interpolation
(13.52 steps). Once for complete runs, once for the same runs with 50% of episodes censored at
a random turn (independently of how they did), and, for contrast, the estimator the summary
used before Kaplan-Meier (plain per-turn means of task correctness) on the censored runs.

    python bench/bench_coverage.py
    python bench/bench_coverage.py --seeds 50
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from harness.analysis.metrics import ScoreMatrices, horizon, task_correctness
from harness.analysis.statistics import (
    crossing_points,
    episode_weights,
    percentile_interval,
    weighted_column_means,
)
from providers.simulated import SimulatedConfig
from testing.simulated_scores import simulate_scores

P, EPISODES, TURNS, RESAMPLES = 0.95, 200, 40, 1000


def true_crossing() -> float:
    lengths = np.arange(1, TURNS + 1, dtype=np.float64)
    return float(crossing_points((P**lengths)[None, :], lengths, 0.5)[0][0])


def censor(index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cut = index.copy()
    for e in np.flatnonzero(rng.random(index.shape[0]) < 0.5):
        cut[e, rng.integers(1, TURNS) :] = np.nan
    return cut


def km_interval(index: np.ndarray, seed: int) -> tuple[float, float] | None:
    scores = ScoreMatrices(index, index, task_correctness(index), 1)
    estimate, _ = horizon(scores, 0.5, resamples=RESAMPLES, rng=np.random.default_rng(seed))
    return estimate.ci95


def plain_mean_interval(index: np.ndarray, seed: int) -> tuple[float, float] | None:
    task = task_correctness(index)
    weights = episode_weights(np.random.default_rng(seed), index.shape[0], RESAMPLES)
    lengths = np.arange(1, TURNS + 1, dtype=np.float64)
    return percentile_interval(
        crossing_points(weighted_column_means(task, weights), lengths, 0.5)[0]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200)
    args = parser.parse_args()
    truth = true_crossing()
    config = SimulatedConfig(p=P)
    hits = {"complete": 0, "50% censored": 0, "50% censored, plain means (before)": 0}
    start = time.perf_counter()
    for seed in range(args.seeds):
        index = simulate_scores(config, episodes=EPISODES, turns=TURNS, seed=seed).index_correct
        cut = censor(index, np.random.default_rng(10_000 + seed))
        for name, interval in (
            ("complete", km_interval(index, seed)),
            ("50% censored", km_interval(cut, seed)),
            ("50% censored, plain means (before)", plain_mean_interval(cut, seed)),
        ):
            hits[name] += interval is not None and interval[0] <= truth <= interval[1]
    print(
        f"p = {P}, {EPISODES} episodes x {TURNS} turns, K = 1, {RESAMPLES} resamples, "
        f"{args.seeds} seeds; true H_0.5 = {truth:.2f} steps ({time.perf_counter() - start:.0f} s)"
    )
    se = math.sqrt(0.95 * 0.05 / args.seeds)
    for name, count in hits.items():
        print(f"{name:<36} coverage {count / args.seeds:.3f} ({count}/{args.seeds})")
    print(f"target 0.93-0.97 (binomial s.e. at 0.95: {se:.3f})")


if __name__ == "__main__":
    main()
