"""``metrics.horizon`` against a slow, obvious bootstrap written here.

The obvious version loops over resamples, draws episode indices with replacement, recomputes
the task-accuracy curve with ``np.nanmean`` and walks it for the first point below s. Its
draws differ from the code's (multinomial counts), so the intervals agree only up to Monte
Carlo error: with 2,000 resamples each, four seeded data sets differed by at most 3% of the
interval's width; the tolerance is 10%. Resampling turns of each column independently instead
of whole episodes moved the upper end by 16-37% of the width on the same data, and any
interval from a wrong level or scale moves further.
"""

import numpy as np
import pytest

from harness.analysis.metrics import ScoreMatrices, horizon, task_correctness


def slow_crossing(curve, lengths, s):
    previous_length, previous = 0.0, 1.0
    for length, accuracy in zip(lengths, curve, strict=True):
        if np.isnan(accuracy):
            accuracy = previous
        if accuracy < s:
            fraction = (previous - s) / (previous - accuracy)
            return previous_length + fraction * (length - previous_length)
        previous_length, previous = length, accuracy
    return lengths[-1]


def slow_interval(task, lengths, s, resamples, rng):
    episodes = task.shape[0]
    crossings = []
    for _ in range(resamples):
        drawn = task[rng.integers(0, episodes, episodes)]
        crossings.append(slow_crossing(np.nanmean(drawn, axis=0), lengths, s))
    return np.percentile(crossings, [2.5, 97.5])


def scores_of(index, k):
    return ScoreMatrices(
        index_correct=index, turn_correct=index, task_correct=task_correctness(index), k=k
    )


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_interval_matches_a_slow_whole_episode_bootstrap(seed):
    rng = np.random.default_rng(seed)
    index = (rng.random((200, 40)) < 0.95).astype(float)
    scores = scores_of(index, k=2)
    result, _ = horizon(scores, 0.5, resamples=2000, rng=np.random.default_rng(100 + seed))
    expected = slow_interval(
        scores.task_correct, scores.lengths, 0.5, 2000, np.random.default_rng(200 + seed)
    )
    width = expected[1] - expected[0]
    assert result.ci95 == pytest.approx(tuple(expected), abs=0.1 * width)
    # the point estimate is exact: the crossing of the plain task-accuracy curve
    point = slow_crossing(np.nanmean(scores.task_correct, axis=0), scores.lengths, 0.5)
    assert result.steps == pytest.approx(point)
    assert result.turns == pytest.approx(point / 2)
    assert not result.censored


def test_hand_built_curve_gives_the_hand_computed_horizon():
    # 4 episodes, K=3: task accuracy per turn 1, 0.75, 0.25 -> crosses 0.5 between
    # 6 steps (0.75) and 9 steps (0.25): 6 + 3 * (0.75 - 0.5) / 0.5 = 7.5 steps = 2.5 turns
    index = np.array([[1, 1, 1], [1, 1, 0], [1, 1, 0], [1, 0, 1]], dtype=float)
    result, bands = horizon(scores_of(index, k=3), 0.5, resamples=0, rng=np.random.default_rng())
    assert (result.steps, result.turns, result.censored) == (7.5, 2.5, False)
    assert result.ci95 is None and bands["task_accuracy"] is None


def test_a_run_that_stays_above_s_is_censored_at_its_length():
    index = np.ones((5, 4))
    index[0, 2] = 0.0  # 0.8 from turn 3 on: never below 0.5
    result, _ = horizon(scores_of(index, k=2), 0.5, resamples=50, rng=np.random.default_rng(0))
    assert (result.steps, result.censored) == (8.0, True)


def test_nothing_scored_claims_no_horizon():
    result, _ = horizon(
        scores_of(np.full((3, 4), np.nan), k=1), 0.5, resamples=50, rng=np.random.default_rng(0)
    )
    assert result.steps is None and result.ci95 is None
