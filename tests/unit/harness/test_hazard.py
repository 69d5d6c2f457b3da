import math

import numpy as np
import pytest

from harness.analysis.hazard import hazard_trend, per_step_hazard
from harness.analysis.statistics import chi2_1_sf, logistic_irls


def logit(q):
    return math.log(q / (1 - q))


def test_per_step_hazard_is_the_kth_root_of_turn_survival():
    n, d = np.array([100.0, 50.0, 0.0]), np.array([19.0, 0.0, 0.0])
    np.testing.assert_allclose(per_step_hazard(n, d, 1)[:2], [0.19, 0.0])
    # a turn of 2 steps survived with 0.81 = 0.9**2: 0.1 per step
    assert per_step_hazard(n, d, 2)[0] == pytest.approx(0.1)
    assert np.isnan(per_step_hazard(n, d, 1)[2])


def test_chi_square_tail_matches_known_quantiles():
    assert chi2_1_sf(3.841459) == pytest.approx(0.05, abs=1e-6)
    assert chi2_1_sf(6.634897) == pytest.approx(0.01, abs=1e-6)
    assert chi2_1_sf(0.0) == 1.0


def test_trend_with_two_lengths_matches_the_saturated_closed_form():
    """With two lengths the two-parameter model reproduces both observed rates exactly."""
    n, d = np.array([400.0, 300.0]), np.array([20.0, 45.0])
    trend = hazard_trend(n, d, k=1)
    q = d / n
    slope = (logit(q[1]) - logit(q[0])) / math.log(2.0)
    assert trend["slope"] == pytest.approx(slope, rel=1e-9)
    se = math.sqrt(sum(1 / (ni * qi * (1 - qi)) for ni, qi in zip(n, q, strict=True))) / math.log(
        2.0
    )
    assert trend["ci95"] == pytest.approx([slope - 1.959964 * se, slope + 1.959964 * se])
    pooled = d.sum() / n.sum()
    lr = 2 * sum(
        di * math.log(qi / pooled) + (ni - di) * math.log((1 - qi) / (1 - pooled))
        for ni, di, qi in zip(n, d, q, strict=True)
    )
    assert trend["p_value"] == pytest.approx(math.erfc(math.sqrt(lr / 2)), rel=1e-9)
    assert trend["verdict"] == "rising"


def test_a_constant_hazard_is_flat_and_a_falling_one_falling():
    n = np.array([1000.0, 900.0, 810.0, 729.0])
    flat = hazard_trend(n, n * 0.1, k=1)
    assert flat["slope"] == pytest.approx(0.0, abs=1e-9) and flat["p_value"] == pytest.approx(1)
    assert flat["verdict"] == "flat"
    falling = hazard_trend(n, n * np.array([0.3, 0.2, 0.1, 0.05]), k=1)
    assert falling["verdict"] == "falling" and falling["slope"] < 0


def test_trend_is_none_without_failures():
    assert hazard_trend(np.array([10.0, 10.0]), np.array([0.0, 0.0]), k=1) is None


def test_irls_matches_a_brute_force_maximum_likelihood():
    rng = np.random.default_rng(0)
    x = rng.normal(size=300)
    y = (rng.random(300) < 1 / (1 + np.exp(-(0.3 - 0.8 * x)))).astype(float)
    design = np.column_stack([np.ones(300), x])
    beta, _ = logistic_irls(design, y, np.ones(300))

    def loglik(a, b):
        eta = a + b * x
        return float(np.sum(y * eta - np.log1p(np.exp(eta))))

    grid = np.linspace(-0.01, 0.01, 21)
    best = max((loglik(beta[0] + da, beta[1] + db), da, db) for da in grid for db in grid)
    assert best[1:] == (0.0, 0.0)  # no point near the fit is better
