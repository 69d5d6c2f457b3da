"""``summary.json`` as a typed model: the one interface between analysis and everything after it.

Reports, sweep tables and figures read a :class:`RunSummary`, never loose dict keys, so a
field renamed or dropped here fails where it is used rather than printing ``n/a``. The
summary is computed by :func:`harness.analysis.summary.summarize` from the run directory
alone (manifest, records, sessions), so rebuilding it gives the same file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.analysis.concurrency import LimitSummary
from harness.analysis.failures import ErrorTaxonomy
from harness.analysis.flexible import FlexibleScores
from harness.analysis.format_drift import FormatDrift
from harness.analysis.strategy_stats import StrategySummary
from harness.analysis.survival_summary import (
    ErrorDynamics,
    Hazard,
    HazardTrend,
    HorizonRatio,
    ThresholdHorizon,
)
from harness.config import HistoryConfig, PriceConfig
from harness.files import atomic_write_text
from harness.records.schema import TokenTally
from harness.records.sessions import CacheStats, SessionStatus
from providers.batch_state import BatchSummary

SUMMARY_FILE = "summary.json"

Band = list[list[float | None]]
"""Per-turn [low, high] 95% intervals."""


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HorizonSummary(_Part):
    """H_s read off the task-accuracy curve."""

    s: float
    """Success threshold."""
    steps: float | None
    """Task length in steps where task accuracy first falls below ``s`` (None: nothing scored)."""
    turns: float | None
    """The same length in turns (steps / K)."""
    ci95: list[float] | None
    """95% episode-bootstrap interval of ``steps``; None without resamples."""
    logistic_steps: float | None
    """Where a logistic fit of success on log2(length) crosses ``s`` (METR's estimate)."""
    logistic_extrapolated: bool | None = None
    """True when that crossing lies past the longest length with an episode at risk: the
    fit's extrapolation, not a measurement."""
    censored: bool
    """True when task accuracy never fell below ``s`` while episodes were at risk: ``steps``
    is then the last length observed, a lower bound."""
    at_risk: int | None = None
    """Episodes at risk where the horizon was read off (Kaplan-Meier)."""
    reliable: bool | None = None
    """At least 10 episodes at risk there; False: the estimate is unreliable."""


class Prop1Summary(_Part):
    """Proposition 1 of the paper: the horizon a constant per-step accuracy predicts."""

    p_hat: float | None
    """Per-step accuracy: the K-th root of the mean turn accuracy."""
    predicted_steps: float | None
    """ln(s) / ln(p_hat)."""


class Bands(_Part):
    """Bootstrap intervals of the per-turn curves (None without resamples)."""

    index_accuracy: Band | None = None
    """Of index accuracy."""
    turn_accuracy: Band | None = None
    """Of turn accuracy."""
    task_accuracy: Band | None = None
    """Of task accuracy."""


class BootstrapInfo(_Part):
    """How the intervals were drawn."""

    resamples: int
    """Bootstrap resamples."""
    seed: int
    """Seed of the resampling generator."""
    unit: Literal["episode"] = "episode"
    """What is resampled: whole episodes, since turns of one episode are correlated."""


class ToHorizon(_Part):
    """What completing one H_s-step task costs: an attempt over the success chance."""

    s: float
    """Success threshold of the horizon."""
    steps: float
    """H_s in steps."""
    censored: bool
    """True when H_s is a lower bound."""
    turns: int
    """Turns of one attempt: ceil(H / K)."""
    task_steps: int
    """Steps of one attempt (turns x K >= H)."""
    success_rate: float | None
    """Task accuracy after those turns: the chance an attempt succeeds."""
    attempts: int
    """Episodes that called the model within the attempt's turns."""
    tokens_per_attempt: float
    """Mean tokens an episode spent in those turns."""
    cost_per_attempt_usd: float | None
    """Mean dollars an episode spent in those turns (None: price unknown)."""
    expected_tokens: float | None
    """tokens_per_attempt / success_rate."""
    expected_cost_usd: float | None
    """cost_per_attempt_usd / success_rate."""


class Economics(_Part):
    """Cost and cost-effectiveness of the run; dollar figures are None when the price is unknown."""

    price: PriceConfig | None
    """The one price of the run, resolved at its start and written in the manifest."""
    cost_usd: float | None
    """What ``tokens_spent`` cost."""
    tokens_per_turn: float | None
    """Tokens per model-called turn (every sample); a replayed reply counts at its original
    usage."""
    cost_per_turn_usd: float | None = None
    """Dollars per model-called turn."""
    tokens_per_episode: float | None
    """Mean tokens of an episode that called the model."""
    cost_per_episode_usd: float | None
    """Mean dollars of such an episode."""
    correct_steps: int
    """K times the turn-correct turns."""
    tokens_per_correct_step: float | None
    """All tokens over ``correct_steps``: wrong turns are paid for by the right ones."""
    usd_per_correct_step: float | None
    """All dollars over ``correct_steps``."""
    to_horizon: ToHorizon | None
    """Cost of completing an H_s-step task; None without a horizon."""
    horizon_steps_per_usd: float | None
    """H_s over the dollars of one attempt."""


class RunSummary(_Part):
    """Everything ``summary.json`` holds about one run."""

    model: str
    """Label of the model (or of the simulated executor)."""
    simulated: bool
    """True for the simulated executor: not a model."""
    experiment: str
    """Experiment preset name."""
    mode: str
    """direct, cot or thinking."""
    k: int
    """Keys per turn."""
    status: SessionStatus
    """complete; incomplete (turns left: resume); stopped (budget, adaptive stopping);
    interrupted (a signal); failed (a fatal provider error)."""
    note: str | None = None
    """One line on why the run is not complete and how to continue it."""
    notes: list[str] = Field(default_factory=list)
    """Caveats for the reader (e.g. what ``stop.after_failure`` leaves unmeasured)."""
    stopped_by: str | None = None
    """Config field or signal that ended the last session early."""
    episodes: int
    """Episodes of the task set."""
    turns: int
    """Turns per episode."""
    turns_scored: int
    """Turns with a score (provider errors and filled turns have none)."""
    turns_unfinished: int
    """Turns still to run for a complete run (0 when complete)."""
    length_cap: int | None = None
    """Turns per episode that ``stop.when_decided`` settled on."""
    index_accuracy: list[float | None]
    """Per turn: share of scored episodes whose answer is the true total."""
    turn_accuracy: list[float | None]
    """Per turn: share whose answer is the shown base plus this turn's values."""
    task_accuracy: list[float | None]
    """Per turn: share right at every turn so far (None under rewritten histories)."""
    ci95: Bands = Field(default_factory=Bands)
    """Bootstrap intervals of the three curves."""
    history: HistoryConfig
    """What the model saw of its past."""
    votes: int = 1
    """Votes per turn of a ``majority`` strategy (1 otherwise)."""
    strategy: StrategySummary | None = None
    """The sampling strategy and what it drew (None in summaries from before strategies)."""
    horizon: HorizonSummary | None
    """H_s; None under a rewritten history, where it does not measure execution."""
    prop1: Prop1Summary | None
    """Proposition 1's prediction beside the observed horizon."""
    # Survival analysis (harness.analysis.survival_summary); None under rewritten histories.
    at_risk: list[int] | None = None
    """Per turn: episodes at risk (right at every earlier scored turn, scored at this one)."""
    horizons: list[ThresholdHorizon] = Field(default_factory=list)
    """H_s at each of ``metrics.thresholds``."""
    horizon_ratio: HorizonRatio | None = None
    """H_0.8 / H_0.5 against a constant hazard's 0.32."""
    hazard: Hazard | None = None
    """Per-step hazard of first failure."""
    hazard_trend: HazardTrend | None = None
    """Is the hazard rising with length (a test of Proposition 1)."""
    error_dynamics: ErrorDynamics | None = None
    """Length and history effects on turn errors."""
    format_errors: int
    """Scored turns whose reply held no usable integer."""
    format_errors_by_kind: dict[str, int]
    """The same by parse status."""
    format_drift: FormatDrift | None = None
    """CoT mode: called turns whose reply shows no working (None in other modes)."""
    context_exceeded: int
    """Turns that ran out of context (scored wrong: a result at long horizons)."""
    provider_errors: int
    """Turns whose latest attempt failed at the provider (unscored; a resume re-runs them)."""
    provider_errors_total: int
    """Every failed attempt, superseded ones included."""
    retries: int
    """Retried requests over all records."""
    retries_by_reason: dict[str, int]
    """The same by failure class."""
    tokens_spent: TokenTally
    """What the run paid for, over all its sessions."""
    tokens_replayed: int
    """prompt + completion tokens of replies the response cache served (not paid again)."""
    mean_latency_s: float | None
    """Mean wall time of a request, retries included."""
    bootstrap: BootstrapInfo
    """How the intervals were drawn."""
    economics: Economics | None = None
    """Cost figures."""
    concurrency: LimitSummary | None = None
    """What ``run.concurrency=auto``'s limit did (None with a fixed limit)."""
    error_taxonomy: ErrorTaxonomy | None = None
    """How the wrong turns were wrong (``harness.analysis.failures``)."""
    flexible: FlexibleScores | None = None
    """Index accuracy with the last integer of tagless replies (strict scoring unchanged)."""
    sessions: int = 0
    """Sessions that ended normally (a killed session writes none)."""
    turns_resumed: int = 0
    """Finished turns the last session read back instead of requesting."""
    cache: CacheStats | None = None
    """What the response cache did in the last session."""
    elapsed_s: float | None = None
    """Wall time of all sessions together."""
    batch: BatchSummary | None = None
    """How the requests were batched (``model.batch``); None for one request per turn."""

    def write(self, run_dir: Path) -> Path:
        """Write ``summary.json`` atomically."""
        path = run_dir / SUMMARY_FILE
        atomic_write_text(path, self.model_dump_json(indent=2) + "\n")
        return path


def read_summary(run_dir: Path) -> RunSummary:
    """A run's ``summary.json``, or a one-line error saying how to make it."""
    path = run_dir / SUMMARY_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: finish the run, or rebuild it with lhe-summarize"
        )
    return RunSummary.model_validate_json(path.read_bytes())
