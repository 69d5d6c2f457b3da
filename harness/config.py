"""The validated run configuration.

Hydra composes the YAML groups and command-line overrides; :func:`load_config` then checks the
result against these pydantic models before anything else happens, so a typo or an out-of-range
value stops the run with one line naming the field, not a traceback halfway through a sweep.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from providers.base import Sampling
from providers.batching import BatchMode, BatchOptions
from tasks.prompts import Mode
from tasks.source import load_task_set
from tasks.taskset import TaskSet
from tasks.words import load_words


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class TaskConfig(StrictModel):
    """What to ask: the dict-sum task set."""

    name: Literal["dict_sum"] = "dict_sum"
    """Task family (only dict-sum exists)."""
    dict_size: int = Field(100, ge=1)
    """Words in the dictionary; at most the size of the shipped word list."""
    min_value: int = -99
    """Smallest dictionary value (inclusive)."""
    max_value: int = 99
    """Largest dictionary value (inclusive)."""
    samples: int = Field(20, ge=1)
    """Episodes in the task set."""
    turns: int = Field(20, ge=1)
    """User turns per episode."""
    k: int = Field(1, ge=1)
    """Keys per user turn (turn complexity K)."""
    seed: int = 42
    """Seed of the dictionary and the episodes."""
    mode: Mode = "direct"
    """``direct`` (answer only), ``cot`` (visible reasoning) or ``thinking`` (reasoning channel)."""
    source: str | None = None
    """A task set to import instead of generating: a saved dataset dir, the paper's JSON, or a
    folder with the hub dataset's files. ``samples`` and ``turns`` then cap what is used."""

    @model_validator(mode="after")
    def _check_ranges(self) -> TaskConfig:
        if self.min_value > self.max_value:
            raise ValueError(
                f"task.min_value: must be <= task.max_value "
                f"(got {self.min_value} > {self.max_value})"
            )
        available = len(load_words())
        if self.dict_size > available:
            raise ValueError(
                f"task.dict_size: must be between 1 and {available} (got {self.dict_size})"
            )
        return self

    def load(self) -> TaskSet:
        """The task set these fields describe: generated, or imported from ``source``.

        The same fields give the same task set on any machine (its fingerprint proves it), so
        the pipeline builds it from the config and analysis rebuilds it from a manifest.
        """
        return load_task_set(
            samples=self.samples,
            turns=self.turns,
            k=self.k,
            dict_size=self.dict_size,
            min_value=self.min_value,
            max_value=self.max_value,
            seed=self.seed,
            source=self.source,
        )


class PriceConfig(StrictModel):
    """Price of a model's tokens in US dollars per million tokens."""

    input: float = Field(ge=0.0)
    """Uncached prompt tokens."""
    cached_input: float | None = Field(None, ge=0.0)
    """Prompt tokens served from the provider's prompt cache (defaults to ``input``)."""
    output: float = Field(ge=0.0)
    """Generated tokens, reasoning included."""
    batch_multiplier: float | None = Field(None, gt=0.0, le=1.0)
    """Share of these prices a request sent through the seller's batch API costs (0.5 at
    OpenAI); None when it sells no batches. Applies only with ``model.batch=api``."""


class ModelConfig(BaseModel):
    """Which model to call and how to sample; other keys go to the provider's own config."""

    model_config = ConfigDict(extra="allow")

    provider: str
    """Registry name (``simulated``, ``openai_compatible``, ...) or ``pkg.mod:factory``."""
    label: str | None = None
    """Short name for run directories and tables; defaults to the provider's own label."""
    temperature: float = Field(0.6, ge=0.0, le=2.0)
    """Sampling temperature."""
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    """Nucleus sampling mass."""
    max_tokens: int = Field(512, ge=1)
    """Generated tokens allowed per reply."""
    stop: list[str] = Field(default_factory=list)
    """Stop sequences."""
    extra_body: dict[str, Any] = Field(default_factory=dict)
    """Provider-specific request fields passed through unchanged."""
    price: PriceConfig | None = None
    """Token prices; when absent they are looked up in ``conf/prices.yaml`` by model name,
    and a model with no known price has an unknown cost (never 0)."""
    batch: BatchMode = "off"
    """``off``: one request per turn; ``api``: the endpoint's batch API (``/v1/batches``, the
    batch price); ``command``: an offline engine run as ``batch_command``."""
    batch_command: str | None = None
    """Command of ``batch=command`` with ``{input}`` and ``{output}`` in it, e.g.
    ``vllm run-batch -i {input} -o {output} --model M``."""
    batch_options: BatchOptions = Field(default_factory=BatchOptions)
    """Polling and resend settings of the batch modes."""

    @model_validator(mode="after")
    def _check_batch(self) -> ModelConfig:
        if self.batch != "off" and self.provider != "openai_compatible":
            raise ValueError(
                f"model.batch: {self.batch} needs an OpenAI-compatible preset (openai_compatible, "
                f"openai, vllm, ...; got provider {self.provider!r})"
            )
        if (self.batch == "command") != (self.batch_command is not None):
            raise ValueError(
                "model.batch_command: set it exactly when model.batch=command "
                f"(got batch={self.batch}, batch_command={self.batch_command!r})"
            )
        return self

    def sampling(self, n: int = 1) -> Sampling:
        """The per-request settings (the runner adds the seed)."""
        return Sampling(
            n=n,
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            stop=self.stop,
            extra_body=self.extra_body,
        )

    def provider_options(self) -> dict[str, Any]:
        """The keys this model does not own, for the provider's factory to validate."""
        return dict(self.model_extra or {})


class HistoryConfig(StrictModel):
    """What the model sees of its past turns (self-conditioning and context experiments)."""

    source: Literal["own", "healed", "injected"] = "own"
    """``own`` answers; ``healed``: rewritten to the truth; ``injected``: truth with errors."""
    window: int | None = Field(None, ge=1)
    """Send only the last N exchanges (the dictionary stays in the system message); null = all."""
    rate: float = Field(0.0, ge=0.0, le=1.0)
    """Probability per turn that an ``injected`` history shows a wrong answer."""
    magnitude: int = Field(10, ge=1)
    """Injected errors are offsets in [-magnitude, magnitude] without 0."""
    target_turn: int | None = Field(None, ge=1)
    """Call the model only from this turn (1-based) on; earlier turns are filled without a
    call. Needs a healed or injected history (there are no own answers to show)."""

    @model_validator(mode="after")
    def _check_combinations(self) -> HistoryConfig:
        if self.target_turn is not None and self.source == "own":
            raise ValueError(
                "history.target_turn: needs history.source healed or injected (got own)"
            )
        if self.rate > 0 and self.source != "injected":
            raise ValueError(
                f"history.rate: only applies to history.source=injected (got {self.source})"
            )
        return self


class RunSettings(StrictModel):
    """How to run: concurrency and seeds."""

    concurrency: int | Literal["auto"] = 8
    """Episodes in flight at once (each has at most one request outstanding), or ``auto``:
    up to ``concurrency_max`` episodes, with requests to the endpoint limited by an adaptive
    (AIMD) controller between ``concurrency_min`` and ``concurrency_max``."""
    concurrency_min: int = Field(4, ge=1)
    """Lowest (and starting) request limit of ``concurrency=auto``."""
    concurrency_max: int = Field(256, ge=1, le=100_000)
    """Highest request limit of ``concurrency=auto`` (also the episodes in flight)."""
    workers: int = Field(1, ge=1, le=256)
    """Processes the episodes are sharded over, each with its own event loop and connections
    (for a fast local server; results are identical to one process)."""
    seed: int = 0
    """Seed of per-request sampling seeds and of any randomness in the runner."""
    progress: bool = True
    """Show a progress line when attached to a terminal."""
    votes: int = Field(1, ge=1)
    """Deprecated alias of ``strategy=majority strategy.n=N`` (moved there; read once and
    rewritten into the strategy section, after which it is 1)."""

    @field_validator("concurrency", mode="before")
    @classmethod
    def _check_concurrency(cls, value: Any) -> Any:
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
            raise ValueError(
                f"run.concurrency: must be a number from 1 to 100000, or auto (got {value!r})"
            )
        return value

    @model_validator(mode="after")
    def _check_limits(self) -> RunSettings:
        if self.concurrency_min > self.concurrency_max:
            raise ValueError(
                f"run.concurrency_min: must be <= run.concurrency_max "
                f"(got {self.concurrency_min} > {self.concurrency_max})"
            )
        return self

    def episodes_in_flight(self) -> int:
        """Episodes a process runs at once (``auto``: its upper limit)."""
        return self.concurrency_max if self.concurrency == "auto" else self.concurrency


class RedFlagConfig(StrictModel):
    """Samples thrown away before they vote: they are resampled and counted apart."""

    max_tokens: int | None = Field(None, ge=1)
    """Discard a sample that generated more tokens than this (overlong); null: no limit."""
    format_errors: bool = False
    """Discard a sample without a parseable answer (``no_answer``, ``bad_format``, ...)."""


class StrategyConfig(StrictModel):
    """How a turn is sampled and decided (see ``harness/run/strategies.py``)."""

    name: Literal["single", "majority", "ahead_by_k"] = "single"
    """``single`` sample; ``majority`` of n; ``ahead_by_k``: sample until one answer leads
    every other by k votes."""
    n: int = Field(1, ge=1)
    """``majority``: votes per turn."""
    k: int = Field(3, ge=1)
    """``ahead_by_k``: the lead over the runner-up that decides a turn."""
    max_samples: int = Field(32, ge=1)
    """Samples per turn at most, red-flagged ones included; at the cap the plurality answer
    is taken and the turn is marked ``capped``."""
    red_flag: RedFlagConfig = Field(default_factory=RedFlagConfig)
    """Which samples are discarded before they vote."""

    @model_validator(mode="after")
    def _check_cap(self) -> StrategyConfig:
        needed = {"single": 1, "majority": self.n, "ahead_by_k": self.k}[self.name]
        if self.max_samples < needed:
            field = "strategy.n" if self.name == "majority" else "strategy.k"
            raise ValueError(
                f"strategy.max_samples: must be >= {field}={needed} (got {self.max_samples})"
            )
        return self

    def sample_range(self) -> tuple[int, int]:
        """Fewest and most samples a turn can draw (the range a pre-run estimate spans)."""
        fewest = {"single": 1, "majority": self.n, "ahead_by_k": self.k}[self.name]
        flags = self.red_flag.max_tokens is not None or self.red_flag.format_errors
        most = self.max_samples if self.name == "ahead_by_k" or flags else fewest
        return fewest, most

    @property
    def label(self) -> str:
        """``single``, ``majority n=3``, ``ahead_by_k k=3`` (red flags appended)."""
        text = {"single": "single", "majority": f"majority n={self.n}"}.get(
            self.name, f"ahead_by_k k={self.k}"
        )
        flags = [f"max_tokens={self.red_flag.max_tokens}"] if self.red_flag.max_tokens else []
        flags += ["format"] if self.red_flag.format_errors else []
        return text + (f" red_flag({', '.join(flags)})" if flags else "")


class CacheConfig(StrictModel):
    """The on-disk response cache."""

    enabled: Literal["auto", "on", "off"] = "auto"
    """``auto`` caches only deterministic requests (temperature 0); ``on`` caches always."""
    dir: str = "results/.cache"
    """Cache directory, shared by every run and sweep job that points at it."""

    def active(self, temperature: float) -> bool:
        """Whether this run uses the cache."""
        return self.enabled == "on" or (self.enabled == "auto" and temperature == 0.0)


class BudgetConfig(StrictModel):
    """Spending limits of one run, and of all jobs of a sweep together."""

    max_usd: float | None = Field(None, gt=0.0)
    """Stop starting new turns once the run's cost reaches this many dollars."""
    max_tokens: int | None = Field(None, ge=1)
    """Stop starting new turns once prompt + completion tokens reach this count."""
    over_estimate: Literal["refuse", "run"] = "refuse"
    """When the pre-run estimate exceeds a limit: ``refuse`` to start, or ``run`` anyway
    and stop at the limit (the summary says how far the run got)."""
    sweep_max_usd: float | None = Field(None, gt=0.0)
    """The same limit in dollars over every job of the multirun (``lhe -m``) together."""
    sweep_max_tokens: int | None = Field(None, ge=1)
    """The same limit in tokens over every job of the multirun together."""


class StopConfig(StrictModel):
    """Ending episodes or the run early when only the horizon is wanted."""

    after_failure: bool = False
    """End each episode at its first task failure (turn accuracy after it is not measured)."""
    when_decided: bool = False
    """End the run once the horizon is decided: task accuracy's interval is entirely below
    ``metrics.s`` at some length and the horizon interval is within ``horizon_precision``."""
    horizon_precision: float = Field(0.1, gt=0.0)
    """Relative half-width of the horizon's 95% interval that counts as decided."""
    min_episodes: int = Field(20, ge=2)
    """Never decide on fewer finished episodes than this."""


class MetricsConfig(StrictModel):
    """How to summarise."""

    s: float = Field(0.5, gt=0.0, lt=1.0)
    """Success threshold of the horizon H_s: the task length where task accuracy falls below it."""
    bootstrap: int = Field(1000, ge=0)
    """Bootstrap resamples (of whole episodes) for the 95% intervals; 0 disables them."""
    seed: int = 0
    """Seed of the bootstrap's random generator."""
    thresholds: list[Annotated[float, Field(gt=0.0, lt=1.0)]] = Field(
        default_factory=lambda: [0.5, 0.8, 0.9]
    )
    """Thresholds s whose horizons ``horizons`` in summary.json lists (``s`` stays the
    headline)."""
    report_turns: list[int] = Field(default_factory=lambda: [1, 5, 10, 20, 50, 100])
    """1-based turns whose accuracies the printed table shows (those within the run)."""


class ReportConfig(StrictModel):
    """What the reports show beyond the run itself."""

    baseline: str | None = None
    """Run (its folder in the sweep) or model label the sweep report compares every run
    against (default: the first run)."""


class ExperimentConfig(StrictModel):
    """Which experiment preset produced the run (names the results folder)."""

    name: str = "horizon"
    """Experiment name."""
    total_steps: int | None = Field(None, ge=1)
    """Fixed task length in steps (``turn_complexity`` derives ``task.turns`` from it)."""


class RunConfig(StrictModel):
    """The whole validated configuration of one run."""

    model: ModelConfig
    """The model section."""
    task: TaskConfig = Field(default_factory=TaskConfig)
    """The task section."""
    run: RunSettings = Field(default_factory=RunSettings)
    """The runner section."""
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    """The sampling-strategy section (samples per turn, voting, red flags)."""
    history: HistoryConfig = Field(default_factory=HistoryConfig)
    """The history section."""
    cache: CacheConfig = Field(default_factory=CacheConfig)
    """The response-cache section."""
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    """The spending-limit section."""
    stop: StopConfig = Field(default_factory=StopConfig)
    """The early-stopping section."""
    estimate: bool = False
    """Print the expected tokens and cost of the run and exit without calling the model."""
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    """The metrics section."""
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)
    """The experiment section."""
    report: ReportConfig = Field(default_factory=ReportConfig)
    """The report section."""

    @model_validator(mode="after")
    def _move_votes(self) -> RunConfig:
        """Rewrite the deprecated ``run.votes=N`` as ``strategy=majority strategy.n=N``."""
        votes = self.run.votes
        if votes == 1:
            return self
        if self.strategy.name != "single":
            raise ValueError(
                f"run.votes: deprecated alias of strategy=majority strategy.n=N; set only the "
                f"strategy (got run.votes={votes} and strategy={self.strategy.name})"
            )
        warnings.warn(
            f"run.votes is deprecated: use strategy=majority strategy.n={votes}",
            FutureWarning,
            stacklevel=2,
        )
        self.strategy = StrategyConfig(
            name="majority",
            n=votes,
            max_samples=max(votes, self.strategy.max_samples),
            red_flag=self.strategy.red_flag,
        )
        self.run = self.run.model_copy(update={"votes": 1})
        return self

    @model_validator(mode="after")
    def _check_target_turn(self) -> RunConfig:
        target = self.history.target_turn
        if target is not None and target > self.task.turns:
            raise ValueError(
                f"history.target_turn: must be between 1 and task.turns={self.task.turns} "
                f"(got {target})"
            )
        return self

    @model_validator(mode="after")
    def _check_workers(self) -> RunConfig:
        if self.run.workers == 1:
            return self
        shared = [
            f"budget.{name}"
            for name in ("max_usd", "max_tokens", "sweep_max_usd", "sweep_max_tokens")
            if getattr(self.budget, name) is not None
        ] + (["stop.when_decided"] if self.stop.when_decided else [])
        if shared:
            raise ValueError(
                f"run.workers: {shared[0]} needs every turn counted in one process "
                f"(allowed with it: run.workers=1; got {self.run.workers})"
            )
        return self

    def config_hash(self) -> str:
        """SHA-256 of everything that changes what is measured.

        Concurrency and workers, the progress display, the cache, the budget, batch polling,
        the metrics and report sections are left out: they change neither the requests nor the
        replies, so a run may be resumed with other values (typically a raised budget).
        """
        measured = self.model_dump(
            mode="json",
            exclude={
                "metrics": True,
                "cache": True,
                "budget": True,
                "estimate": True,
                "report": True,
                "run": {"concurrency", "concurrency_min", "concurrency_max", "workers", "progress"},
                "model": {"batch_options"},
            },
        )
        canonical = json.dumps(measured, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class ConfigError(ValueError):
    """A configuration problem, already phrased as one line naming the field."""


def _fields_at(model: type[BaseModel], path: tuple[Any, ...]) -> list[str] | None:
    """Field names of the (nested) model that ``path`` points into, if it is a model."""
    for part in path:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return sorted(model.model_fields)


def describe_validation_error(
    error: ValidationError, *, prefix: str = "", model: type[BaseModel] | None = None
) -> str:
    """Reduce pydantic's report to one line: ``field: what is allowed (got value)``.

    ``prefix`` names the config section the validated dict came from (``model`` for a
    provider's options); ``model`` lets an unknown key be answered with the allowed ones.
    """
    first = error.errors()[0]
    location = ".".join(str(part) for part in (prefix, *first["loc"]) if part != "")
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        allowed = _fields_at(model, tuple(first["loc"][:-1])) if model else None
        return f"{location}: unknown field" + (
            f" (allowed: {', '.join(allowed)})" if allowed else ""
        )
    if ":" in message.split(" ")[0]:  # our own validators already name the field
        return message
    got = first.get("input")
    suffix = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"{location}: {message}{suffix}" if location else f"{message}{suffix}"


def load_config(raw: dict[str, Any]) -> RunConfig:
    """Validate a composed config; raise :class:`ConfigError` with a one-line message."""
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, model=RunConfig)) from None
