"""Per-turn accuracies, the horizon and Proposition 1, computed from turn records.

Definitions (turn t, over episodes):

* index accuracy: the answer equals the true running total.
* turn accuracy: the answer equals the *base* plus this turn's values, where the base is the
  last answer the history showed the model (0 at turn 0). A turn whose predecessor had no
  parseable answer builds on the last parsed one before it, the value the model last committed
  to; the record stores that base, so the rule is applied once, in the runner.
* task accuracy: every turn up to t was index-correct. Once an episode fails it stays failed,
  so an episode that later stopped (context exhausted, provider error) still counts as a
  failure at every later turn.

Scoring of non-answers: format errors and ``context_exceeded`` are wrong answers of that
turn (running out of context is a result at long horizons). A ``provider_error`` is not scored
at all: the turn and everything after it in that episode are unknown, unless the episode had
already failed, which no later turn can undo.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.analysis.statistics import (
    column_percentiles,
    crossing_points,
    episode_weights,
    finite_or_none,
    independent_error_horizon,
    logistic_crossing,
    logistic_fit,
    percentile_interval,
    weighted_column_means,
)
from harness.records.table import RecordTable


@dataclass(frozen=True)
class ScoreMatrices:
    """Per-episode, per-turn scores: 1.0 right, 0.0 wrong, NaN not scored."""

    index_correct: np.ndarray
    turn_correct: np.ndarray
    task_correct: np.ndarray
    k: int

    @property
    def lengths(self) -> np.ndarray:
        """Task length in steps after each turn."""
        return np.arange(1, self.index_correct.shape[1] + 1, dtype=np.float64) * self.k


def score_matrices(table: RecordTable, *, episodes: int, turns: int, k: int) -> ScoreMatrices:
    """Arrange a run's records into (episodes x turns) score matrices.

    Every row of ``table`` is taken as the one record of its (episode, turn): pass the table
    :meth:`~harness.records.table.RecordTable.latest` returns, so a resumed turn supersedes
    its failed attempt.
    """
    scored = table.scored() & (table.episode < episodes) & (table.turn < turns)
    rows, cols = table.episode[scored], table.turn[scored]
    index_correct = np.full((episodes, turns), np.nan)
    turn_correct = np.full((episodes, turns), np.nan)
    index_correct[rows, cols] = table.index_correct()[scored]
    turn_correct[rows, cols] = table.turn_correct()[scored]
    return ScoreMatrices(
        index_correct=index_correct,
        turn_correct=turn_correct,
        task_correct=task_correctness(index_correct),
        k=k,
    )


def task_correctness(index_correct: np.ndarray) -> np.ndarray:
    """Task (prefix) correctness from index correctness, NaN where still undecided."""
    failed = np.logical_or.accumulate(index_correct == 0.0, axis=1)
    unknown = np.logical_or.accumulate(np.isnan(index_correct), axis=1)
    return np.where(failed, 0.0, np.where(unknown, np.nan, 1.0))


def column_means(values: np.ndarray) -> np.ndarray:
    """Mean over scored episodes per turn (NaN where none is scored)."""
    scored = ~np.isnan(values)
    counts = scored.sum(axis=0)
    sums = np.where(scored, values, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


@dataclass(frozen=True)
class Horizon:
    """H_s with its interval and the logistic estimate."""

    s: float
    steps: float | None
    """None when no turn was scored at all (every request failed at the provider)."""
    turns: float | None
    censored: bool
    ci95: tuple[float, float] | None
    logistic_steps: float | None


def horizon(
    scores: ScoreMatrices, s: float, *, resamples: int, rng: np.random.Generator
) -> tuple[Horizon, dict[str, list[list[float]] | None]]:
    """Estimate H_s and bootstrap intervals for it and for every per-turn curve.

    Returns the horizon and, per metric name, the per-turn [lo, hi] intervals (None when
    bootstrapping is off).
    """
    lengths = scores.lengths
    task_curve = column_means(scores.task_correct)
    curve_ci: dict[str, list[list[float]] | None] = {
        "index_accuracy": None,
        "turn_accuracy": None,
        "task_accuracy": None,
    }
    if np.isnan(task_curve).all():
        # Nothing scored: a crossing would be read off the length-0 point alone and claim
        # that task accuracy never fell below s.
        empty = Horizon(s=s, steps=None, turns=None, censored=False, ci95=None, logistic_steps=None)
        return empty, curve_ci
    crossing, censored = crossing_points(task_curve[None, :], lengths, s)
    steps = float(crossing[0])

    ci95 = None
    episodes = scores.task_correct.shape[0]
    if resamples > 0 and episodes > 1:
        weights = episode_weights(rng, episodes, resamples)
        for name, matrix in (
            ("index_accuracy", scores.index_correct),
            ("turn_accuracy", scores.turn_correct),
            ("task_accuracy", scores.task_correct),
        ):
            boot = weighted_column_means(matrix, weights)
            if name == "task_accuracy":
                boot_crossing, _ = crossing_points(boot, lengths, s)
                ci95 = percentile_interval(boot_crossing)
            lo, hi = column_percentiles(boot, [2.5, 97.5])
            curve_ci[name] = [
                [finite_or_none(a), finite_or_none(b)] for a, b in zip(lo, hi, strict=True)
            ]

    return (
        Horizon(
            s=s,
            steps=steps,
            turns=steps / scores.k,
            censored=bool(censored[0]),
            ci95=ci95,
            logistic_steps=logistic_horizon(scores.task_correct, lengths, s),
        ),
        curve_ci,
    )


def logistic_horizon(task_correct: np.ndarray, lengths: np.ndarray, s: float) -> float | None:
    """METR-style estimate: logistic fit of success on log2(task length), read off at ``s``."""
    scored = ~np.isnan(task_correct)
    successes = np.where(scored, task_correct, 0.0).sum(axis=0)
    trials = scored.sum(axis=0).astype(np.float64)
    fit = logistic_fit(np.log2(lengths), successes, trials)
    if fit is None:
        return None
    crossing = logistic_crossing(*fit, s)
    return None if crossing is None else float(2.0**crossing)


def per_step_accuracy(turn_correct: np.ndarray, k: int) -> float | None:
    """p_hat: per-step accuracy implied by the mean turn accuracy, assuming independent steps."""
    scored = turn_correct[~np.isnan(turn_correct)]
    if scored.size == 0:
        return None
    return float(scored.mean() ** (1.0 / k))


def prop1(scores: ScoreMatrices, s: float) -> dict[str, float | None]:
    """Observed p_hat and the horizon Proposition 1 predicts from it."""
    p_hat = per_step_accuracy(scores.turn_correct, scores.k)
    predicted = None if p_hat is None else independent_error_horizon(p_hat, s)
    return {"p_hat": p_hat, "predicted_steps": predicted}
