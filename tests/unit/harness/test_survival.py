import numpy as np
import pytest

from harness.analysis.metrics import ScoreMatrices, column_means, horizon, task_correctness
from harness.analysis.statistics import episode_weights
from harness.analysis.survival import SurvivalFit, kaplan_meier, risk_sets

N = np.nan


def km_by_hand(index_correct):
    """The textbook product-limit estimator, one turn and one episode at a time."""
    episodes, turns = index_correct.shape
    survival, curve = 1.0, []
    failed = [False] * episodes
    for t in range(turns):
        at_risk = dead = 0
        for e in range(episodes):
            value = index_correct[e, t]
            if failed[e] or np.isnan(value):
                continue
            at_risk += 1
            if value == 0:
                dead += 1
                failed[e] = True
        if at_risk:
            survival *= 1 - dead / at_risk
        curve.append(survival)
    return np.array(curve)


def test_kaplan_meier_matches_a_hand_built_table():
    index = np.array(
        [
            [1, 1, 0, N],  # fails at turn 2
            [1, N, N, N],  # censored after turn 0
            [1, 1, 1, 1],
            [0, N, N, N],  # fails at turn 0
            [1, 1, N, N],  # censored after turn 1
        ],
        dtype=float,
    )
    sets = risk_sets(index)
    n, d = sets.counts()
    np.testing.assert_array_equal(n, [5, 3, 2, 1])
    np.testing.assert_array_equal(d, [1, 0, 1, 0])
    # S = 4/5, 4/5, 4/5 * 1/2, 0.4 (the plain mean at turn 2 would be 1/3)
    np.testing.assert_allclose(kaplan_meier(n, d), [0.8, 0.8, 0.4, 0.4])


def test_kaplan_meier_matches_the_slow_estimator_on_random_censored_matrices():
    rng = np.random.default_rng(3)
    for _ in range(20):
        index = (rng.random((30, 12)) < 0.9).astype(float)
        for e, cut in enumerate(rng.integers(0, 13, 30)):
            if rng.random() < 0.5:
                index[e, cut:] = np.nan
        n, d = risk_sets(index).counts()
        curve = kaplan_meier(n, d)
        slow = km_by_hand(index)
        known = ~np.isnan(curve)
        np.testing.assert_allclose(curve[known], slow[known], rtol=1e-12)


def test_without_censoring_kaplan_meier_is_the_plain_mean():
    rng = np.random.default_rng(0)
    for p in (0.5, 0.8, 0.97):
        index = (rng.random((200, 40)) < p).astype(float)
        n, d = risk_sets(index).counts()
        np.testing.assert_allclose(
            kaplan_meier(n, d), column_means(task_correctness(index)), rtol=1e-12, atol=1e-15
        )


def test_the_curve_is_unknown_after_the_last_episode_at_risk_unless_it_reached_zero():
    survived = np.array([[1, 1, N], [1, 0, N]], dtype=float)
    n, d = risk_sets(survived).counts()
    curve = kaplan_meier(n, d)
    assert curve[1] == 0.5 and np.isnan(curve[2])
    all_failed = np.array([[0, N], [1, 0]], dtype=float)
    np.testing.assert_array_equal(kaplan_meier(*risk_sets(all_failed).counts()), [0.5, 0.0])


def test_an_episode_never_started_is_in_no_risk_set():
    index = np.array([[1, 0], [N, N]], dtype=float)
    n, _ = risk_sets(index).counts()
    np.testing.assert_array_equal(n, [1, 1])


def test_weighted_curves_equal_curves_of_explicitly_resampled_episodes():
    rng = np.random.default_rng(1)
    index = (rng.random((15, 8)) < 0.85).astype(float)
    index[3, 4:] = np.nan
    index[9, 2:] = np.nan
    weights = episode_weights(np.random.default_rng(2), 15, 5)
    fit = SurvivalFit.of(index, weights)
    for row, w in enumerate(weights):
        drawn = np.repeat(index, w.astype(int), axis=0)
        np.testing.assert_allclose(fit.boot_curves[row], km_by_hand(drawn), rtol=1e-12)


def scores_of(index, k=1):
    return ScoreMatrices(index, index.copy(), task_correctness(index), k)


def test_a_run_cut_at_turn_ten_reports_a_censored_lower_bound_of_ten_steps():
    rng = np.random.default_rng(5)
    index = (rng.random((600, 40)) < 0.95).astype(float)
    index[:, 10:] = np.nan
    estimate, _ = horizon(scores_of(index), 0.5, resamples=200, rng=rng)
    assert estimate.censored and estimate.steps == 10.0 and estimate.ci95 is None
    assert estimate.at_risk > 300 and estimate.reliable


def test_random_censoring_leaves_the_horizon_unbiased():
    """60% of episodes cut at a random turn, independently of their outcome."""
    rng = np.random.default_rng(7)
    index = (rng.random((20000, 40)) < 0.95).astype(float)
    complete, _ = horizon(scores_of(index), 0.5, resamples=0, rng=rng)
    cut = index.copy()
    for e in np.flatnonzero(rng.random(20000) < 0.6):
        cut[e, rng.integers(1, 40) :] = np.nan
    censored, _ = horizon(scores_of(cut), 0.5, resamples=0, rng=rng)
    assert censored.steps == pytest.approx(complete.steps, rel=0.02)
    assert not censored.censored


def test_few_episodes_at_risk_at_the_crossing_mark_the_horizon_unreliable():
    index = np.array([[1, 1, 0]] * 3 + [[1, 0, N]] * 3, dtype=float)
    estimate, _ = horizon(scores_of(index), 0.5, resamples=0, rng=np.random.default_rng(0))
    # S = 1, 0.5, 0: first below 0.5 at turn 3, where the 3 survivors of turn 2 were at risk
    assert estimate.at_risk == 3 and not estimate.reliable


def test_the_printed_table_says_when_few_episodes_were_at_risk():
    from types import SimpleNamespace

    from harness.analysis.run_summary import HorizonSummary
    from harness.report.text import _horizon_lines

    h = HorizonSummary(s=0.5, steps=7.5, turns=7.5, ci95=[6.0, 9.0], logistic_steps=None,
                       censored=False, at_risk=4, reliable=False)  # fmt: skip
    summary = SimpleNamespace(horizon=h, prop1=None, history=None)
    assert "UNRELIABLE: 4 episodes at risk there" in _horizon_lines(summary, h)[0]
    fine = h.model_copy(update={"at_risk": 40, "reliable": True})
    summary.horizon = fine
    assert "UNRELIABLE" not in _horizon_lines(summary, fine)[0]
