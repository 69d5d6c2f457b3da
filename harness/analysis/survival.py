"""Task accuracy as a survival curve: Kaplan-Meier over episodes, and horizons read off it.

Task accuracy at turn t is the share of episodes still right after t turns. Real runs leave
episodes unfinished (a provider outage, a budget stop, Ctrl-C, a cluster time limit,
``stop.when_decided``): such an episode is right-censored after its last scored turn. Averaging
the episodes that have a value at t is biased low, because a failed episode stays "known
failed" after its last record while a surviving one drops out of the denominator. The
Kaplan-Meier estimator keeps every episode in the risk set exactly as long as it is observed:

    S(t) = prod over turns u <= t of (1 - d_u / n_u)

with n_u the episodes *at risk* at turn u (scored at u, and right at every scored turn before
it) and d_u those of them wrong at u. With no censoring the product telescopes to the plain
share of survivors. Beyond the last turn with an episode at risk nothing is known, so the
curve is NaN there (0 once it has reached 0: every episode at risk failed).

Bootstrap resamples of whole episodes are a weights matrix over episodes (see
:func:`harness.statistics.episode_weights`), so a resampled curve needs only n_u and d_u as
weighted sums: two matrix products, never a (resamples, episodes, turns) array. lifelines and
statsmodels' ``SurvfuncRight`` fit one curve at a time; a thousand resampled curves of a
thousand turns through them would take longer than the whole summary, hence the few lines here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.analysis.statistics import crossing_points, percentile_interval

UNRELIABLE_AT_RISK = 10
"""Fewer episodes at risk than this where a horizon is read off make it unreliable there."""


@dataclass(frozen=True)
class RiskSets:
    """Per episode and turn: at risk (0/1) and failing there (0/1), as float matrices."""

    at_risk: np.ndarray
    events: np.ndarray

    def counts(self, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(n_u, d_u) per turn; with weights (resamples x episodes), one row per resample."""
        if weights is None:
            return self.at_risk.sum(axis=0), self.events.sum(axis=0)
        return weights @ self.at_risk, weights @ self.events


def risk_sets(index_correct: np.ndarray) -> RiskSets:
    """Who is at risk and who fails at each turn, from index correctness (NaN = not scored).

    An episode is at risk at turn t while it has been right at every scored turn before t and
    is scored at t; it fails at its first wrong turn (format errors and context exhaustion are
    wrong). An episode with no score at all is in no risk set: it never started.
    """
    scored = ~np.isnan(index_correct)
    wrong = index_correct == 0.0
    failed = np.logical_or.accumulate(wrong, axis=1)
    failed_before = np.zeros_like(failed)
    failed_before[:, 1:] = failed[:, :-1]
    at_risk = scored & ~failed_before
    return RiskSets(at_risk=at_risk.astype(np.float64), events=(at_risk & wrong).astype(np.float64))


def kaplan_meier(at_risk: np.ndarray, events: np.ndarray) -> np.ndarray:
    """S(t) from n_u and d_u per turn (last axis; any leading axes are separate curves).

    NaN after the last turn with anyone at risk, unless the curve already reached 0.
    """
    at_risk = np.asarray(at_risk, dtype=np.float64)
    events = np.asarray(events, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = np.where(at_risk > 0, 1.0 - events / at_risk, 1.0)
    curve = np.cumprod(factor, axis=-1)
    observed = at_risk > 0
    turns = observed.shape[-1]
    last = turns - 1 - np.argmax(observed[..., ::-1], axis=-1)
    last = np.where(observed.any(axis=-1), last, -1)
    beyond = np.arange(turns) > last[..., None]
    return np.where(beyond & (curve > 0), np.nan, curve)


@dataclass(frozen=True)
class KMHorizon:
    """H_s read off a Kaplan-Meier curve."""

    s: float
    steps: float | None
    """The crossing, or the last length observed when ``censored`` (a lower bound); None when
    no episode was ever at risk."""
    censored: bool
    ci95: tuple[float, float] | None
    """Bootstrap interval; None when censored (a lower bound has no interval) or off."""
    at_risk: int | None
    """Episodes at risk at the turn where the curve crossed s (the last observed turn when
    censored): the evidence behind the crossing."""

    @property
    def reliable(self) -> bool:
        """Whether enough episodes were at risk where the horizon was read off."""
        return self.at_risk is not None and self.at_risk >= UNRELIABLE_AT_RISK

    def as_dict(self, k: int) -> dict:
        """The JSON form used in ``summary.json`` (``horizons`` entries)."""
        return {
            "s": self.s,
            "steps": self.steps,
            "turns": None if self.steps is None else self.steps / k,
            "ci95": list(self.ci95) if self.ci95 else None,
            "censored": self.censored,
            "at_risk": self.at_risk,
            "reliable": self.reliable,
        }


def crossing_turn(curve: np.ndarray, s: float) -> int | None:
    """0-based turn where ``curve`` first falls below ``s``; else its last known turn."""
    known = np.flatnonzero(~np.isnan(curve))
    if known.size == 0:
        return None
    below = np.flatnonzero(curve[known] < s)
    return int(known[below[0]]) if below.size else int(known[-1])


def km_horizon(
    curve: np.ndarray,
    at_risk: np.ndarray,
    lengths: np.ndarray,
    s: float,
    boot_curves: np.ndarray | None = None,
) -> KMHorizon:
    """H_s of one Kaplan-Meier curve, with the bootstrap interval of resampled curves."""
    turn = crossing_turn(curve, s)
    if turn is None:
        return KMHorizon(s=s, steps=None, censored=False, ci95=None, at_risk=None)
    crossing, censored = crossing_points(curve[None, :], lengths, s)
    ci95 = None
    if boot_curves is not None and not censored[0]:
        ci95 = percentile_interval(crossing_points(boot_curves, lengths, s)[0])
    return KMHorizon(
        s=s,
        steps=float(crossing[0]),
        censored=bool(censored[0]),
        ci95=ci95,
        at_risk=int(at_risk[turn]),
    )


@dataclass(frozen=True, eq=False)
class SurvivalFit:
    """A run's Kaplan-Meier curve with its bootstrap resamples, computed once per summary.

    Everything downstream (the horizons at several thresholds, the hazard, comparisons)
    reads these arrays, so one set of resampled episodes serves every interval.
    """

    at_risk: np.ndarray
    """n_u per turn."""
    events: np.ndarray
    """d_u per turn."""
    curve: np.ndarray
    """S(t) per turn."""
    weights: np.ndarray | None
    """(resamples x episodes) bootstrap counts; None when bootstrapping is off."""
    boot_at_risk: np.ndarray | None
    boot_events: np.ndarray | None
    boot_curves: np.ndarray | None

    @classmethod
    def of(cls, index_correct: np.ndarray, weights: np.ndarray | None) -> SurvivalFit:
        """Fit the curve and, given bootstrap weights, every resampled curve."""
        sets = risk_sets(index_correct)
        n, d = sets.counts()
        boot_n = boot_d = boot_curves = None
        if weights is not None:
            boot_n, boot_d = sets.counts(weights)
            boot_curves = kaplan_meier(boot_n, boot_d)
        return cls(
            at_risk=n,
            events=d,
            curve=kaplan_meier(n, d),
            weights=weights,
            boot_at_risk=boot_n,
            boot_events=boot_d,
            boot_curves=boot_curves,
        )

    def horizon(self, lengths: np.ndarray, s: float) -> KMHorizon:
        """H_s with its interval."""
        return km_horizon(self.curve, self.at_risk, lengths, s, self.boot_curves)
