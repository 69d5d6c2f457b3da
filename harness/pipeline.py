"""One run from a validated config to a summary: the pipeline's single orchestration point."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.analysis.run_summary import RunSummary
from harness.analysis.summary import summarize
from harness.config import ConfigError, PriceConfig, RunConfig, describe_validation_error
from harness.economics.budget import LEDGER_DIR, Budget, SweepLedger
from harness.economics.costs import load_price_table, resolve_price, usage_cost
from harness.economics.estimate import RunEstimate, estimate_run, exceeds_budget, format_estimate
from harness.economics.token_counts import MessageTokens
from harness.event_loop import run_async
from harness.records.manifest import MANIFEST_FILE, build_manifest, read_manifest, write_manifest
from harness.records.run_lock import LOCK_FILE, holding
from harness.records.schema import TurnRecord
from harness.records.sessions import SessionRecord, SessionStatus, append_session
from harness.report.run_page import write_run_report
from harness.report.text import format_table
from harness.run.cache import CachedProvider, Endpoint, ResponseCache
from harness.run.history import HistoryPolicy
from harness.run.progress import ProgressLine
from harness.run.runner import Runner, RunProgress
from harness.run.workers import (
    SHARDS_DIR,
    ShardedRunner,
    WorkerChannel,
    merge_shards,
    shard_episodes,
)
from providers.base import Provider
from providers.batching import create_batching
from providers.concurrency import AdaptiveLimit, SharedLimit, attach_adaptive_limit
from providers.registry import create_provider, token_counter
from tasks.taskset import TaskSet


def make_task_set(config: RunConfig) -> TaskSet:
    """The task set of a config, with config errors phrased as one line."""
    try:
        return config.task.load()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def check_resumable(run_dir: Path, config: RunConfig) -> bool:
    """True when ``run_dir`` already holds this run; refuse a different config's records."""
    manifest_path = run_dir / MANIFEST_FILE
    if not manifest_path.exists():
        return False
    previous = read_manifest(run_dir)
    if previous.config_hash == config.config_hash():
        return True
    changed = _changed_fields(previous.config, config.model_dump(mode="json"))
    raise ConfigError(
        f"{run_dir} holds a run with a different config (changed: {', '.join(changed) or '?'}); "
        "use a new output directory"
    )


def _changed_fields(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        changed: list[str] = []
        for key in sorted(set(old) | set(new)):
            changed += _changed_fields(old.get(key), new.get(key), f"{prefix}{key}.")
        return changed
    return [] if old == new else [prefix.rstrip(".")]


async def prepare(config: RunConfig) -> tuple[TaskSet, Provider]:
    """Everything that can fail because of the config, done before any model call.

    Builds the task set, creates the provider and runs its preflight check, so a bad value
    stops the run with one line before a single request is spent.
    """
    task_set = make_task_set(config)
    return task_set, await make_provider(config)


def check_budget(config: RunConfig, estimate: RunEstimate, price: PriceConfig | None) -> None:
    """Refuse a run the budget cannot pay for, or cannot even price.

    With ``budget.over_estimate=run`` an estimate above the budget only prints a note: the
    run starts and stops at the limit. A dollar limit without a price is refused either way,
    since nothing could ever reach it.
    """
    for name in ("max_usd", "sweep_max_usd"):
        if getattr(config.budget, name) is not None and price is None:
            raise ConfigError(
                f"budget.{name}: no price is known for this model; set model.price={{input: "
                "USD per 1M tokens, output: USD per 1M tokens}} or drop the limit"
            )
    reason = exceeds_budget(estimate, config.budget)
    if reason and config.budget.over_estimate == "run":
        print(
            f"lhe: note: {reason.split(';')[0]}; budget.over_estimate=run: starting anyway, "
            "the run stops at the budget",
            file=sys.stderr,
        )
    elif reason:
        raise ConfigError(reason)


async def make_provider(config: RunConfig) -> Provider:
    """Create the provider and run its preflight check (config errors as one line)."""
    model = config.model
    return await _checked(
        lambda: create_provider(
            model.provider, model.provider_options(), concurrency=config.run.episodes_in_flight()
        )
    )


async def make_batch_provider(config: RunConfig, run_dir: Path) -> Provider:
    """The provider of ``model.batch=api|command``, preflight-checked.

    It gathers the run's requests into batch files kept in ``run_dir`` (see
    :mod:`providers.batching`).
    """
    model = config.model
    return await _checked(
        lambda: create_batching(
            model.provider,
            model.provider_options(),
            mode=model.batch,
            command=model.batch_command,
            options=model.batch_options,
            run_dir=run_dir,
        )
    )


async def _checked(create: Callable[[], Provider]) -> Provider:
    """``create()``, with config errors as one line, then the provider's preflight check."""
    try:
        provider = create()
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, prefix="model")) from None
    except ValueError as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    try:
        await provider.preflight()
    except BaseException:
        await provider.aclose()
        raise
    return provider


def with_cache(config: RunConfig, provider: Provider) -> Provider:
    """The provider behind the response cache when the config turns it on.

    Entries are keyed by the endpoint (provider kind, URL, model), so two servers serving
    one model name never answer for each other.
    """
    if not config.cache.active(config.model.temperature):
        return provider
    endpoint = Endpoint(
        provider=config.model.provider,
        base_url=config.model.provider_options().get("base_url"),
        label=provider.label,
    )
    return CachedProvider(provider, ResponseCache(Path(config.cache.dir)), endpoint)


def run_price(config: RunConfig, run_dir: Path) -> PriceConfig | None:
    """The one price of a run: resolved when it starts, read back from its manifest after.

    The budget, the progress line and the summary's economics all use this price, so the
    price that enforced ``budget.max_usd`` is the one the summary reports.
    """
    if (run_dir / MANIFEST_FILE).exists():
        manifest = read_manifest(run_dir)
        if manifest.config_hash == config.config_hash() and "price" in manifest.model_fields_set:
            return manifest.price
    return resolve_price(config.model, None, load_price_table())


def make_runner(
    config: RunConfig,
    task_set: TaskSet,
    provider: Provider,
    run_dir: Path,
    *,
    budget: Budget,
    on_turn: Callable[[TurnRecord, RunProgress], None] | None = None,
    **shard: Any,
) -> Runner:
    """The runner a config asks for (``shard``: a worker's ``episodes`` and ``read_from``)."""
    history = config.history
    return Runner(
        task_set=task_set,
        provider=provider,
        sampling=config.model.sampling(),
        strategy=config.strategy,
        policy=HistoryPolicy(
            source=history.source,
            rate=history.rate,
            magnitude=history.magnitude,
            seed=config.run.seed,
            mode=config.task.mode,
        ),
        window=history.window,
        first_called_turn=(history.target_turn or 1) - 1,
        run_dir=run_dir,
        # A batch holds one turn of every episode in flight: in batch mode that is all of them.
        concurrency=config.run.episodes_in_flight()
        if config.model.batch == "off"
        else task_set.samples,
        run_seed=config.run.seed,
        budget=budget,
        stop=config.stop,
        s=config.metrics.s,
        decision_seed=config.metrics.seed,
        on_turn=on_turn,
        **shard,
    )


def adaptive_limit(
    config: RunConfig,
    provider: Provider,
    run_dir: Path,
    worker: int = 0,
    shared: SharedLimit | None = None,
) -> AdaptiveLimit | None:
    """With ``run.concurrency=auto``, the endpoint's limit, logging to ``concurrency.jsonl``.

    ``shared``: the run's one limit in shared memory, in a worker process.
    """
    if config.run.concurrency != "auto":
        return None
    try:
        return attach_adaptive_limit(
            provider,
            run_dir,
            minimum=config.run.concurrency_min,
            maximum=config.run.concurrency_max,
            worker=worker,
            shared=shared,
        )
    except ValueError:
        raise ConfigError(
            f"run.concurrency: auto adapts to an HTTP endpoint, and model.provider="
            f"{config.model.provider} has none (allowed here: a number)"
        ) from None


def message_tokens(config: RunConfig, task_set: TaskSet) -> MessageTokens | None:
    """Tokens of the run's message parts by the model's tokenizer, where its provider counts."""
    counter = token_counter(config.model.provider, config.model.provider_options())
    if counter is None:
        return None
    name, count = counter
    return MessageTokens.counted(count, task_set, config.task.mode, name)


async def execute(
    config: RunConfig, run_dir: Path, *, sweep_dir: Path | None = None
) -> RunSummary | RunEstimate:
    """Run (or resume) the configured experiment in ``run_dir`` and return its summary.

    With ``estimate=true`` nothing runs: the pre-run estimate is printed and returned.
    ``sweep_dir`` is the multirun directory when this run is one job of a sweep: the jobs
    share their spending there, for ``budget.sweep_max_*``.
    """
    task_set = make_task_set(config)
    price = run_price(config, run_dir)
    estimate = estimate_run(config, task_set, price, tokens=message_tokens(config, task_set))
    if config.estimate:
        print(format_estimate(estimate, config.budget))
        return estimate
    check_budget(config, estimate, price)
    run_dir.mkdir(parents=True, exist_ok=True)
    with holding(run_dir / LOCK_FILE, busy="another lhe session"):
        return await _execute(config, run_dir, task_set, price, estimate, sweep_dir)


async def _execute(
    config: RunConfig,
    run_dir: Path,
    task_set: TaskSet,
    price: PriceConfig | None,
    estimate: RunEstimate,
    sweep_dir: Path | None,
) -> RunSummary:
    """The session itself, with the run directory locked."""
    resuming = check_resumable(run_dir, config)
    merge_shards(run_dir)  # a sharded session that was killed left its records per worker
    started = datetime.now(timezone.utc)
    provider = await (
        make_provider(config)
        if config.model.batch == "off"
        else make_batch_provider(config, run_dir)
    )
    limit = adaptive_limit(config, provider, run_dir) if config.run.workers == 1 else None
    provider = with_cache(config, provider)
    label = config.model.label or provider.label
    if not resuming:
        write_manifest(
            run_dir,
            build_manifest(
                config, task_set, provider_label=label, simulated=provider.simulated, price=price
            ),
        )
    budget = Budget(
        limits=config.budget,
        cost_of=lambda usage: usage_cost(usage, price),
        ledger=None if sweep_dir is None else SweepLedger(sweep_dir / LEDGER_DIR, job=run_dir.name),
    )
    progress_line = ProgressLine(budget, priced=price is not None)
    if config.run.workers > 1:  # the parent only checked the endpoint; workers connect anew
        await provider.aclose()
        runner: Runner | ShardedRunner = ShardedRunner(
            config, run_dir, run_shard, progress_line if config.run.progress else None
        )
    else:
        runner = make_runner(
            config,
            task_set,
            provider,
            run_dir,
            budget=budget,
            on_turn=progress_line if config.run.progress else None,
        )
    # The handlers stay until the summary and report are written: a second Ctrl-C that
    # arrives after the last turn must not interrupt them with a KeyboardInterrupt.
    remove_handlers = _handle_signals(runner, run_dir)
    try:
        return await _run_and_summarize(
            config, run_dir, runner, provider, progress_line, started, limit
        )
    finally:
        remove_handlers()


def _session_end(progress: RunProgress, run_dir: Path) -> tuple[SessionStatus | None, str | None]:
    """How a session ended, and the one line that says so."""
    if progress.fatal_error:
        return "failed", progress.fatal_error
    if progress.stopped_by and progress.stopped_by.startswith("signal"):
        return "interrupted", f"{progress.stopped_by}; resume with: lhe resume={run_dir}"
    if progress.stopped_by and progress.stopped_by.startswith("budget."):
        turns = progress.turns_done + progress.turns_resumed
        return "stopped", f"stopped early by {progress.stopped_by} after {turns:,} turns"
    if progress.stopped_by:
        return "stopped", f"stopped early by {progress.stopped_by}"
    if progress.provider_errors:
        return None, (
            f"{progress.provider_errors} turn(s) failed at the provider after retries (last: "
            f"{progress.last_provider_error}); not scored, re-run by: lhe resume={run_dir}"
        )
    return None, None


async def _run_and_summarize(
    config: RunConfig,
    run_dir: Path,
    runner: Runner | ShardedRunner,
    provider: Provider,
    progress_line: ProgressLine,
    started: datetime,
    limit: AdaptiveLimit | None = None,
) -> RunSummary:
    try:
        progress = await runner.run()
    finally:
        progress_line.close()
        await provider.aclose()
        if limit is not None:
            limit.close()
    outcome, note = _session_end(progress, run_dir)
    append_session(
        run_dir,
        SessionRecord(
            started=started.isoformat(timespec="seconds"),
            ended=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            elapsed_s=round(time.monotonic() - progress.started, 3),
            outcome=outcome,
            note=note,
            stopped_by=progress.stopped_by,
            length_cap=progress.length_cap,
            turns_resumed=progress.turns_resumed,
            provider_errors=progress.provider_errors,
            cache=provider.stats if isinstance(provider, CachedProvider) else None,
        ),
    )
    summary = summarize(run_dir)
    summary.write(run_dir)
    report = write_run_report(run_dir)
    print(format_table(summary, run_dir, config.metrics.report_turns))
    print(f"           {report}")
    return summary


def _handle_signals(runner: Runner | ShardedRunner, run_dir: Path) -> Callable[[], None]:
    """SIGINT/SIGTERM: the first lets turns in flight finish, a second drops them.

    Either way every record on disk is a whole turn, and the message says how to resume.
    Returns a function that removes the handlers.
    """
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def on_signal(sig: signal.Signals) -> None:
        if runner.progress.stopped_by is None:
            # One write, before the workers (if any) hear of it and write their own lines.
            sys.stderr.write(
                f"\nlhe: {sig.name}: finishing the turns in flight (again to drop them); "
                f"resume with: lhe resume={run_dir}\n"
            )
            sys.stderr.flush()
            runner.stop(f"signal {sig.name}")
        else:
            runner.abort()

    try:
        for sig in signals:
            loop.add_signal_handler(sig, on_signal, sig)
    except (NotImplementedError, RuntimeError):  # not the main thread, or no signal support
        return lambda: None

    def remove() -> None:
        for sig in signals:
            loop.remove_signal_handler(sig)

    return remove


def run(
    config: RunConfig, run_dir: Path, *, sweep_dir: Path | None = None
) -> RunSummary | RunEstimate:
    """Synchronous entry point."""
    return run_async(execute(config, run_dir, sweep_dir=sweep_dir))


async def run_shard(
    config: RunConfig, run_dir: Path, channel: WorkerChannel
) -> tuple[RunProgress, float]:
    """One worker process of ``run.workers``: its shard of the episodes.

    Its records go to a folder of its own, which :class:`~harness.run.workers.ShardedRunner`
    merges into ``turns.jsonl``; ``channel`` brings the parent's signals and takes the
    progress counts back.
    """
    shard_dir = run_dir / SHARDS_DIR / str(channel.index)
    shard_dir.mkdir(parents=True, exist_ok=True)
    with holding(shard_dir / LOCK_FILE, busy=f"worker {channel.index} of another session"):
        return await _run_shard(config, run_dir, shard_dir, channel)


async def _run_shard(
    config: RunConfig, run_dir: Path, shard_dir: Path, channel: WorkerChannel
) -> tuple[RunProgress, float]:
    task_set = make_task_set(config)
    provider = await make_provider(config)
    limit = adaptive_limit(config, provider, run_dir, worker=channel.index, shared=channel.limit)
    provider = with_cache(config, provider)
    price = run_price(config, run_dir)
    runner = make_runner(
        config,
        task_set,
        provider,
        shard_dir,
        budget=Budget(limits=config.budget, cost_of=lambda usage: usage_cost(usage, price)),
        on_turn=channel.on_turn,
        episodes=shard_episodes(task_set.samples, channel.workers, channel.index),
        read_from=run_dir,
    )
    started = time.perf_counter()
    try:
        with channel.attached(runner):
            return await runner.run(), time.perf_counter() - started
    finally:
        await provider.aclose()
        if limit is not None:
            limit.close()
