"""Score matrices drawn from the simulated executor's error model, without running it.

Statistical studies need hundreds of runs (interval coverage over 200 seeds, calibration over
10 seeds x 3 settings); through the pipeline, where the executor re-reads its whole history
every turn, that takes many minutes. This draws the same process directly, vectorised over
episodes, turn by turn: every key is wrong with the executor's
:meth:`providers.simulated.SimulatedProvider.step_error_rate` (a base rate, plus
``self_conditioning`` times the share of wrong answers shown so far, plus ``context_decay`` per
earlier turn) by a non-zero offset in [-10, 10], and each turn builds on the previous answer
(own history), so the running total stays wrong until offsets happen to cancel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from providers.simulated import SimulatedConfig


@dataclass(frozen=True)
class SimulatedScores:
    """Index and turn correctness (episodes x turns, 1.0 / 0.0), as a run would score them."""

    index_correct: np.ndarray
    turn_correct: np.ndarray


def error_rate(config: SimulatedConfig, wrong_share: np.ndarray, turn: int) -> np.ndarray:
    """The executor's per-step error probability, for arrays of wrong shares."""
    rate = (1.0 - config.p) + config.self_conditioning * wrong_share + config.context_decay * turn
    return np.clip(rate, 0.0, 1.0)


def simulate_scores(
    config: SimulatedConfig, *, episodes: int, turns: int, k: int = 1, seed: int = 0
) -> SimulatedScores:
    """One run's scores; see the module docstring."""
    rng = np.random.default_rng(seed)
    index_correct = np.empty((episodes, turns))
    turn_correct = np.empty((episodes, turns))
    offset = np.zeros(episodes, dtype=np.int64)  # the answer minus the truth
    wrong_shown = np.zeros(episodes)
    for t in range(turns):
        share = wrong_shown / t if t else np.zeros(episodes)
        rate = error_rate(config, share, t)
        wrong_keys = rng.random((episodes, k)) < rate[:, None]
        size = rng.integers(1, 11, (episodes, k)) * np.where(rng.random((episodes, k)) < 0.5, 1, -1)
        step = (wrong_keys * size).sum(axis=1)
        turn_correct[:, t] = step == 0
        offset += step
        index_correct[:, t] = offset == 0
        wrong_shown += offset != 0
    return SimulatedScores(index_correct=index_correct, turn_correct=turn_correct)
