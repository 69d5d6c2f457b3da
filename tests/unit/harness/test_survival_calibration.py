"""Calibration of the hazard test and the error-dynamics regression (issue: 10 seeds each).

400 episodes x 40 turns at p = 0.97, drawn from the simulated executor's error model
(``testing.simulated_scores``; the real executor through the pipeline is checked once per
setting in tests/integration/test_survival_pipeline.py).
"""

import numpy as np
import pytest

from harness.analysis.metrics import ScoreMatrices, horizon, task_correctness
from harness.analysis.survival_summary import survival_blocks
from providers.simulated import SimulatedConfig, SimulatedProvider
from testing.simulated_scores import error_rate, simulate_scores

SEEDS = range(10)


def blocks(seed, **knobs):
    drawn = simulate_scores(SimulatedConfig(p=0.97, **knobs), episodes=400, turns=40, seed=seed)
    scores = ScoreMatrices(
        drawn.index_correct, drawn.turn_correct, task_correctness(drawn.index_correct), 1
    )
    estimate, _ = horizon(scores, 0.5, resamples=300, rng=np.random.default_rng(seed))
    return survival_blocks(scores, estimate)


def covers_zero(effect):
    return effect.ci95[0] < 0 < effect.ci95[1]


def test_the_twin_uses_the_executors_error_rate():
    config = SimulatedConfig(p=0.97, self_conditioning=0.5, context_decay=0.002)
    provider = SimulatedProvider(config)
    for share, turn in [(0.0, 0), (0.25, 7), (1.0, 39), (0.9, 500)]:
        expected = provider.step_error_rate(share, turn)
        assert error_rate(config, np.array([share]), turn)[0] == pytest.approx(expected)


def test_context_decay_gives_a_rising_hazard_and_a_length_effect():
    for seed in SEEDS:
        result = blocks(seed, context_decay=0.002)
        trend = result["hazard_trend"]
        assert trend.verdict == "rising" and trend.p_value < 0.01, seed
        assert result["error_dynamics"].length_effect.estimate > 0, seed


def test_self_conditioning_gives_a_history_effect_and_no_rising_hazard():
    results = [blocks(seed, self_conditioning=0.5) for seed in SEEDS]
    for seed, result in zip(SEEDS, results, strict=True):
        assert result["error_dynamics"].history_effect.ci95[0] > 0, seed
    rising = sum(r["hazard_trend"].verdict == "rising" for r in results)
    assert rising <= 1


def test_a_constant_rate_gives_a_flat_hazard_and_effects_covering_zero():
    results = [blocks(seed) for seed in SEEDS]
    flat = sum(r["hazard_trend"].verdict == "flat" for r in results)
    length = sum(covers_zero(r["error_dynamics"].length_effect) for r in results)
    history = sum(covers_zero(r["error_dynamics"].history_effect) for r in results)
    assert flat >= 9 and length >= 9 and history >= 9, (flat, length, history)
