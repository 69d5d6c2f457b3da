"""First-to-ahead-by-k against the gambler's-ruin formulas, on the simulated executor.

With ``model.wrong_values=1`` every wrong sample of a turn gives the same wrong answer, so a
turn is a random walk of the vote difference, +1 with probability p and -1 with q = 1 - p,
absorbed at +k (right) or -k (wrong): right with probability 1 / (1 + (q/p)^k), after
k/(p - q) * (1 - (q/p)^k) / (1 + (q/p)^k) samples on average.
"""

import numpy as np
import pytest

from harness.config import StrategyConfig
from harness.records.schema import read_records
from harness.run.runner import Runner
from providers.base import Sampling
from providers.simulated import SimulatedConfig, SimulatedProvider
from tasks.generate import generate_task_set

EPISODES, TURNS = 100, 30
"""3,000 turns per case: the accuracy of p=0.9, k=3 (0.9986) is then known to +-0.0007."""


def ruin_accuracy(p, k):
    return 1 / (1 + ((1 - p) / p) ** k)


def ruin_duration(p, k):
    r = (1 - p) / p
    return k / (p - (1 - p)) * (1 - r**k) / (1 + r**k)


def test_formulas_against_a_direct_simulation_of_the_walk():
    """The closed forms themselves, checked against a plain walk (no harness code)."""
    rng = np.random.default_rng(0)
    for p, k in [(0.7, 2), (0.6, 3)]:
        ends, lengths = [], []
        for _ in range(20_000):
            lead = steps = 0
            while abs(lead) < k:
                lead += 1 if rng.random() < p else -1
                steps += 1
            ends.append(lead > 0)
            lengths.append(steps)
        assert np.mean(ends) == pytest.approx(ruin_accuracy(p, k), abs=0.01)
        assert np.mean(lengths) == pytest.approx(ruin_duration(p, k), rel=0.02)


async def race(tmp_path, p, k, wrong_values):
    task_set = generate_task_set(samples=EPISODES, turns=TURNS, k=1, seed=11)
    provider = SimulatedProvider(SimulatedConfig(p=p, wrong_values=wrong_values, seed=5))
    runner = Runner(
        task_set=task_set,
        provider=provider,
        sampling=Sampling(),
        run_dir=tmp_path,
        concurrency=16,
        strategy=StrategyConfig(name="ahead_by_k", k=k, max_samples=1000),
    )
    await runner.run()
    records = read_records(tmp_path)
    assert len(records) == EPISODES * TURNS and not any(r.capped for r in records)
    right = np.array([r.answer == r.base + r.delta for r in records], dtype=float)
    samples = np.array([r.n_samples for r in records], dtype=float)
    return right, samples


@pytest.mark.slow
@pytest.mark.parametrize("p", [0.7, 0.9])
@pytest.mark.parametrize("k", [2, 3])
async def test_two_outcome_race_matches_gamblers_ruin(tmp_path, p, k):
    right, samples = await race(tmp_path, p, k, wrong_values=1)
    expected = ruin_accuracy(p, k)
    accuracy_se = np.sqrt(expected * (1 - expected) / right.size)
    duration_se = samples.std(ddof=1) / np.sqrt(samples.size)
    assert abs(right.mean() - expected) <= 3 * accuracy_se
    assert abs(samples.mean() - ruin_duration(p, k)) <= 3 * duration_se


@pytest.mark.slow
@pytest.mark.parametrize("p", [0.7, 0.9])
async def test_many_distinct_wrong_values_do_at_least_as_well(tmp_path, p):
    """Scattered wrong votes rarely agree, so the right answer gets ahead at least as often."""
    k = 2
    right, _ = await race(tmp_path, p, k, wrong_values=None)
    expected = ruin_accuracy(p, k)
    assert right.mean() >= expected - 3 * np.sqrt(expected * (1 - expected) / right.size)
