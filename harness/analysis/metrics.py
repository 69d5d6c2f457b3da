"""Per-turn accuracies, the horizon and Proposition 1, computed from turn records.

Definitions (turn t, over episodes):

* index accuracy: the answer equals the true running total.
* turn accuracy: the answer equals the *base* plus this turn's values, where the base is the
  last answer the history showed the model (0 at turn 0). A turn whose predecessor had no
  parseable answer builds on the last parsed one before it, the value the model last committed
  to; the record stores that base, so the rule is applied once, in the runner.
* task accuracy: every turn up to t was index-correct. Once an episode fails it stays failed,
  so an episode that later stopped (context exhausted, provider error) still counts as a
  failure at every later turn. Over episodes it is the Kaplan-Meier estimate
  (:mod:`harness.analysis.survival`): an episode that simply has no more records is censored
  after its last scored turn, neither failed nor dropped.

Scoring of non-answers: format errors and ``context_exceeded`` are wrong answers of that
turn (running out of context is a result at long horizons). A ``provider_error`` is not scored
at all: the turn and everything after it in that episode are unknown, unless the episode had
already failed, which no later turn can undo.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from harness.analysis.statistics import (
    column_percentiles,
    episode_weights,
    finite_or_none,
    independent_error_horizon,
    logistic_crossing,
    logistic_fit,
    weighted_column_means,
)
from harness.analysis.survival import UNRELIABLE_AT_RISK, SurvivalFit
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
    """Task accuracy never fell below s while some episode was at risk: ``steps`` is the last
    length observed, a lower bound."""
    ci95: tuple[float, float] | None
    logistic_steps: float | None
    logistic_extrapolated: bool | None = None
    """The logistic crossing lies past the longest length with an episode at risk."""
    at_risk: int | None = None
    """Episodes at risk where the horizon was read off (under 10: unreliable there)."""
    fit: SurvivalFit | None = field(default=None, repr=False, compare=False)
    """The Kaplan-Meier fit and its resamples, for the other survival statistics."""

    @property
    def reliable(self) -> bool:
        """Enough episodes at risk at the crossing to trust it."""
        return self.at_risk is not None and self.at_risk >= UNRELIABLE_AT_RISK


def task_accuracy(scores: ScoreMatrices) -> np.ndarray:
    """Kaplan-Meier task accuracy per turn (see :mod:`harness.analysis.survival`)."""
    return SurvivalFit.of(scores.index_correct, None).curve


def horizon(
    scores: ScoreMatrices,
    s: float,
    *,
    resamples: int,
    rng: np.random.Generator,
) -> tuple[Horizon, dict[str, list[list[float]] | None]]:
    """Estimate H_s and bootstrap intervals for it and for every per-turn curve.

    Task accuracy is the Kaplan-Meier curve over episodes, so episodes that stopped early
    (provider outage, budget, interrupt) count as censored, not as failed or as missing.
    Returns the horizon and, per metric name, the per-turn [lo, hi] intervals (None when
    bootstrapping is off).
    """
    lengths = scores.lengths
    curve_ci: dict[str, list[list[float]] | None] = {
        "index_accuracy": None,
        "turn_accuracy": None,
        "task_accuracy": None,
    }
    episodes = scores.index_correct.shape[0]
    weights = None
    if resamples > 0 and episodes > 1:
        weights = episode_weights(rng, episodes, resamples)
    fit = SurvivalFit.of(scores.index_correct, weights)
    estimate = fit.horizon(lengths, s)
    if estimate.steps is None:
        # Nothing scored: a crossing would be read off the length-0 point alone and claim
        # that task accuracy never fell below s.
        empty = Horizon(s=s, steps=None, turns=None, censored=False, ci95=None, logistic_steps=None)
        return empty, curve_ci
    if weights is not None:
        for name, boot in (
            ("index_accuracy", weighted_column_means(scores.index_correct, weights)),
            ("turn_accuracy", weighted_column_means(scores.turn_correct, weights)),
            ("task_accuracy", fit.boot_curves),
        ):
            lo, hi = column_percentiles(boot, [2.5, 97.5])
            curve_ci[name] = [
                [finite_or_none(a), finite_or_none(b)] for a, b in zip(lo, hi, strict=True)
            ]

    logistic = logistic_horizon(fit.curve, scores.task_correct, lengths, s)
    return (
        Horizon(
            s=s,
            steps=estimate.steps,
            turns=estimate.steps / scores.k,
            censored=estimate.censored,
            ci95=estimate.ci95,
            logistic_steps=logistic,
            logistic_extrapolated=None
            if logistic is None
            else logistic > longest_known(fit.curve, lengths),
            at_risk=estimate.at_risk,
            fit=fit,
        ),
        curve_ci,
    )


def logistic_horizon(
    task_accuracy: np.ndarray, task_correct: np.ndarray, lengths: np.ndarray, s: float
) -> float | None:
    """METR-style estimate: logistic fit of success on log2(task length), read off at ``s``.

    The success rate at length L is the Kaplan-Meier task accuracy (``task_accuracy``) and its
    weight the episodes whose outcome at L is known (``task_correct`` not NaN: observed
    through L, or failed before they stopped). With every episode run to the end that is the
    plain fit of successes over trials. Counting the known outcomes themselves instead would
    bias it low under censoring, as plain means bias task accuracy (an episode cut after a
    failure stays a known failure while a cut survivor drops out; see
    :mod:`harness.analysis.survival`), and dropping every cut episode would bias it high under
    ``stop.after_failure``, where failing is why an episode stops. Lengths past the last one
    with an episode at risk (NaN accuracy) have no weight.
    """
    trials = (~np.isnan(task_correct)).sum(axis=0).astype(np.float64)
    known = ~np.isnan(task_accuracy)
    trials = np.where(known, trials, 0.0)
    successes = np.where(known, task_accuracy, 0.0) * trials
    fit = logistic_fit(np.log2(lengths), successes, trials)
    if fit is None:
        return None
    crossing = logistic_crossing(*fit, s)
    return None if crossing is None else float(2.0**crossing)


def longest_known(task_accuracy: np.ndarray, lengths: np.ndarray) -> float:
    """The longest task length with a task-accuracy estimate (0 if none)."""
    known = ~np.isnan(task_accuracy)
    return float(lengths[known].max()) if known.any() else 0.0


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
