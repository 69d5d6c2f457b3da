import math

import numpy as np
import pytest

from harness.analysis.statistics import (
    crossing_points,
    episode_weights,
    independent_error_horizon,
    logistic_crossing,
    logistic_fit,
    percentile_interval,
    weighted_column_means,
)


def test_crossing_is_interpolated_between_the_bracketing_lengths():
    lengths = np.array([1.0, 2.0, 3.0, 4.0])
    crossing, censored = crossing_points(np.array([[0.9, 0.7, 0.4, 0.2]]), lengths, 0.5)
    # between length 2 (0.7) and 3 (0.4): 2 + (0.7 - 0.5) / 0.3
    assert crossing[0] == pytest.approx(2 + 0.2 / 0.3)
    assert not censored[0]


def test_crossing_before_the_first_point_starts_from_length_zero():
    crossing, _ = crossing_points(np.array([[0.0, 0.0]]), np.array([10.0, 20.0]), 0.5)
    assert crossing[0] == pytest.approx(5.0)


def test_a_curve_that_never_falls_below_s_is_censored_at_the_last_length():
    crossing, censored = crossing_points(
        np.array([[1.0, 0.8, 0.6]]), np.array([2.0, 4.0, 6.0]), 0.5
    )
    assert censored[0] and crossing[0] == 6.0


def test_unscored_points_carry_the_previous_value():
    curves = np.array([[0.9, np.nan, 0.3]])
    crossing, _ = crossing_points(curves, np.array([1.0, 2.0, 3.0]), 0.5)
    # NaN at 2 becomes 0.9, so the crossing lies between 2 and 3
    assert 2.0 < crossing[0] < 3.0


def test_weights_resample_whole_episodes():
    rng = np.random.default_rng(0)
    weights = episode_weights(rng, episodes=7, resamples=500)
    assert weights.shape == (500, 7)
    assert np.all(weights.sum(axis=1) == 7)


def test_weighted_means_match_explicit_resampling():
    rng = np.random.default_rng(1)
    values = rng.integers(0, 2, size=(6, 4)).astype(float)
    values[2, 3] = np.nan
    weights = episode_weights(np.random.default_rng(2), 6, 3)
    means = weighted_column_means(values, weights)
    for row, w in enumerate(weights):
        drawn = np.repeat(values, w.astype(int), axis=0)
        np.testing.assert_allclose(means[row], np.nanmean(drawn, axis=0))


def test_percentile_interval_ignores_nan():
    lo, hi = percentile_interval(np.array([np.nan, *range(101)], dtype=float))
    assert (lo, hi) == pytest.approx((2.5, 97.5))
    assert percentile_interval(np.array([np.nan])) is None


def test_logistic_fit_recovers_known_parameters():
    x = np.linspace(-3, 3, 13)
    a, b = 0.5, -1.2
    p = 1 / (1 + np.exp(-(a + b * x)))
    trials = np.full_like(x, 1e6)
    fit = logistic_fit(x, p * trials, trials)
    assert fit is not None
    assert fit[0] == pytest.approx(a, abs=1e-3) and fit[1] == pytest.approx(b, abs=1e-3)
    assert logistic_crossing(*fit, 0.5) == pytest.approx(-a / b, abs=1e-3)


def test_logistic_fit_refuses_separated_data():
    x = np.array([1.0, 2.0, 3.0])
    assert logistic_fit(x, np.array([5.0, 5.0, 5.0]), np.array([5.0, 5.0, 5.0])) is None


@pytest.mark.parametrize(
    ("p", "expected"), [(0.9, 6.6), (0.95, 13.5), (0.99, 69.0), (0.999, 693.0)]
)
def test_proposition_one_matches_the_paper_table(p, expected):
    assert independent_error_horizon(p, 0.5) == pytest.approx(expected, rel=0.01)
    assert independent_error_horizon(1.0, 0.5) is None
    assert math.isclose(p ** independent_error_horizon(p, 0.5), 0.5)
