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

from harness.analysis.metrics import ScoreMatrices, horizon, logistic_horizon, task_correctness
from harness.analysis.run_summary import HorizonSummary
from harness.analysis.survival import SurvivalFit
from harness.report.text import logistic_text


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


def logistic_of(index, lengths):
    """The logistic horizon of a score matrix, as the summary computes it (H_0.5)."""
    curve = SurvivalFit.of(index, None).curve
    return logistic_horizon(curve, task_correctness(index), lengths, 0.5)


def censored_copy(index, last_turn):
    """``index`` with every episode's turns from ``last_turn[e]`` on unscored."""
    cut = index.copy()
    for episode, last in enumerate(last_turn):
        cut[episode, last:] = np.nan
    return cut


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_the_logistic_horizon_is_unbiased_when_episodes_stop_at_random(seed):
    """60% of episodes cut at a random turn, whatever their outcome: the fit barely moves.

    Counting a cut episode that had failed as a failure at every later length, while a cut
    survivor drops out, moved it 9-11% low on these data sets.
    """
    rng = np.random.default_rng(seed)
    episodes, turns = 2000, 40
    index = (rng.random((episodes, turns)) < 0.95).astype(float)
    lengths = np.arange(1.0, turns + 1)
    last = np.where(rng.random(episodes) < 0.6, rng.integers(1, turns, episodes), turns)
    complete = logistic_of(index, lengths)
    assert logistic_of(censored_copy(index, last), lengths) == pytest.approx(complete, rel=0.05)


def test_a_length_cap_fits_the_logistic_to_the_lengths_run_only():
    """Every episode stopped after 15 turns (``stop.when_decided``): the fit is that of the
    first 15 turns, with no trial at a length nobody ran."""
    rng = np.random.default_rng(7)
    index = (rng.random((500, 40)) < 0.95).astype(float)
    lengths = np.arange(1.0, 41)
    capped = logistic_of(censored_copy(index, np.full(500, 15)), lengths)
    assert capped == pytest.approx(logistic_of(index[:, :15], lengths[:15]), rel=1e-12)


def test_episodes_stopped_by_their_first_failure_leave_the_logistic_fit_as_it_was():
    """``stop.after_failure``: an episode stops because it failed, so it is a failure at every
    later length, and the fit is that of the same episodes run to the end."""
    rng = np.random.default_rng(5)
    index = (rng.random((500, 40)) < 0.95).astype(float)
    first_failure = np.where((index == 0).any(axis=1), (index == 0).argmax(axis=1) + 1, 40)
    lengths = np.arange(1.0, 41)
    stopped = logistic_of(censored_copy(index, first_failure), lengths)
    assert stopped == pytest.approx(logistic_of(index, lengths), rel=1e-12)


def test_a_logistic_crossing_past_the_lengths_run_is_marked_as_extrapolated():
    rng = np.random.default_rng(3)
    index = (rng.random((400, 40)) < 0.95).astype(float)  # crosses 0.5 near 13.5 steps
    complete, _ = horizon(scores_of(index, k=1), 0.5, resamples=0, rng=rng)
    cut = scores_of(censored_copy(index, np.full(400, 10)), k=1)
    stopped, _ = horizon(cut, 0.5, resamples=0, rng=rng)
    assert complete.logistic_steps < 40 and complete.logistic_extrapolated is False
    assert stopped.logistic_steps > 10 and stopped.logistic_extrapolated is True
    shown = HorizonSummary(
        s=0.5,
        steps=10.0,
        turns=10.0,
        ci95=None,
        censored=True,
        logistic_steps=stopped.logistic_steps,
        logistic_extrapolated=True,
    )
    assert logistic_text(shown) == (
        f"{stopped.logistic_steps:.1f} steps (extrapolated past the lengths run)"
    )
