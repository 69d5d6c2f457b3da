"""Turn a run directory into its :class:`~harness.analysis.run_summary.RunSummary`.

Reads only what the run wrote: ``manifest.json``, ``turns.jsonl`` and ``sessions.jsonl``, plus
the side files of the modes that write one (``concurrency.jsonl`` under
``run.concurrency=auto``, ``batches/state.json`` under ``model.batch``). So a summary can be
rebuilt at any time (``lhe-summarize DIR``), with a different ``s`` or bootstrap size too,
without calling a model, and a rebuilt summary equals the one the run wrote.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.analysis.concurrency import limit_summary
from harness.analysis.failures import error_taxonomy
from harness.analysis.flexible import flexible_scores
from harness.analysis.format_drift import run_format_drift
from harness.analysis.metrics import column_means, horizon, prop1, score_matrices
from harness.analysis.run_summary import (
    Bands,
    BootstrapInfo,
    Economics,
    HorizonSummary,
    Prop1Summary,
    RunSummary,
)
from harness.analysis.statistics import finite_or_none
from harness.analysis.strategy_stats import run_strategy, strategy_summary
from harness.analysis.survival_summary import DEFAULT_THRESHOLDS, survival_blocks
from harness.config import HistoryConfig, ModelConfig, PriceConfig
from harness.economics.costs import (
    batch_price_note,
    economics,
    load_price_table,
    resolve_price,
)
from harness.records.manifest import Manifest, read_manifest
from harness.records.schema import FORMAT_ERRORS
from harness.records.sessions import read_sessions
from harness.records.table import RecordTable, read_table
from providers.batch_state import batch_summary

AFTER_FAILURE_NOTE = (
    "stop.after_failure: each episode ended at its first failure, so turn accuracy "
    "after it is not measured (later turns average over surviving episodes only)"
)


def _curve(values: np.ndarray) -> list[float | None]:
    return [finite_or_none(v) for v in values]


def run_price(manifest: Manifest) -> PriceConfig | None:
    """The run's one price: the manifest's (older manifests: resolved from their config)."""
    if "price" in manifest.model_fields_set:
        return manifest.price
    model_config = ModelConfig.model_validate(manifest.config["model"])
    return resolve_price(model_config, None, load_price_table())


def summarize(
    run_dir: Path,
    *,
    s: float | None = None,
    resamples: int | None = None,
    seed: int | None = None,
) -> RunSummary:
    """The summary of a run, from the files the run wrote (see the module docstring).

    It never reads the previous ``summary.json``, so rebuilding a summary gives the same file.
    Arguments override the manifest's metrics settings.
    """
    manifest = read_manifest(run_dir)
    config = manifest.config
    metrics_config = config["metrics"]
    s = metrics_config["s"] if s is None else s
    resamples = metrics_config["bootstrap"] if resamples is None else resamples
    seed = metrics_config["seed"] if seed is None else seed
    shape = manifest.task_set
    episodes, turns, k = shape.episodes, shape.turns, shape.k
    sessions = read_sessions(run_dir)
    last = sessions[-1] if sessions else None

    table = read_table(run_dir)
    latest = table.latest()
    scores = score_matrices(latest, episodes=episodes, turns=turns, k=k)
    estimate, curve_ci = horizon(scores, s, resamples=resamples, rng=np.random.default_rng(seed))
    history = HistoryConfig.model_validate(config.get("history", {}))
    # Under a rewritten history the model never builds on its own answers, so task accuracy
    # and the horizon do not measure execution; turn accuracy is the quantity of interest.
    own_history = history.source == "own"
    task_curve = _curve(estimate.fit.curve) if own_history and estimate.fit else [None] * turns

    strategy = run_strategy(config)
    statuses = latest.status_counts()
    scored = int((~np.isnan(scores.index_correct)).sum())
    after_failure = config.get("stop", {}).get("after_failure", False)
    length_cap = last.length_cap if last else None
    needed = turns if length_cap is None else min(turns, length_cap)
    finished = latest.take(latest.turn < needed)
    unfinished = (
        episodes * needed
        - int((~finished.is_status("provider_error")).sum())
        - _turns_not_needed(finished, needed, after_failure)
    )
    status = last.outcome if last and last.outcome else None
    if status is None:
        status = "complete" if unfinished == 0 else "incomplete"
    p1 = prop1(scores, s)
    summary = RunSummary(
        model=manifest.provider.label,
        simulated=manifest.provider.simulated,
        experiment=config["experiment"]["name"],
        mode=config["task"]["mode"],
        k=k,
        status=status,
        note=last.note if last else None,
        notes=[AFTER_FAILURE_NOTE] if after_failure else [],
        stopped_by=last.stopped_by if last else None,
        episodes=episodes,
        turns=turns,
        turns_scored=scored,
        turns_unfinished=unfinished,
        length_cap=length_cap,
        index_accuracy=_curve(column_means(scores.index_correct)),
        turn_accuracy=_curve(column_means(scores.turn_correct)),
        task_accuracy=task_curve,
        ci95=Bands.model_validate(curve_ci),
        history=history,
        votes=strategy.n if strategy.name == "majority" else 1,
        strategy=strategy_summary(table, strategy, k),
        horizon=None
        if not own_history
        else HorizonSummary(
            s=s,
            steps=estimate.steps,
            turns=estimate.turns,
            ci95=list(estimate.ci95) if estimate.ci95 else None,
            logistic_steps=estimate.logistic_steps,
            logistic_extrapolated=estimate.logistic_extrapolated,
            censored=estimate.censored,
            at_risk=estimate.at_risk,
            reliable=estimate.reliable if estimate.steps is not None else None,
        ),
        prop1=Prop1Summary.model_validate(p1) if own_history else None,
        format_errors=sum(statuses[name] for name in FORMAT_ERRORS),
        format_errors_by_kind={name: statuses[name] for name in FORMAT_ERRORS},
        format_drift=run_format_drift(run_dir, config["task"]["mode"]),
        context_exceeded=statuses["context_exceeded"],
        provider_errors=statuses["provider_error"],
        provider_errors_total=int(table.is_status("provider_error").sum()),
        retries=int(table.retries.sum()),
        retries_by_reason=dict(table.retry_reason_counts().most_common()),
        tokens_spent=table.tokens_spent(),
        tokens_replayed=table.tokens_replayed(),
        mean_latency_s=float(np.mean(table.latency_s)) if len(table) else None,
        bootstrap=BootstrapInfo(resamples=resamples, seed=seed),
        sessions=len(sessions),
        turns_resumed=last.turns_resumed if last else 0,
        cache=last.cache if last else None,
        elapsed_s=round(sum(x.elapsed_s for x in sessions), 3) if sessions else None,
        concurrency=limit_summary(run_dir),
        # Kaplan-Meier based parts; see harness.analysis.survival_summary
        **(
            survival_blocks(
                scores,
                estimate,
                metrics_config.get("thresholds", DEFAULT_THRESHOLDS),
                window=history.window,
            )
            if own_history
            else {}
        ),
    )
    price = run_price(manifest)
    summary.economics = Economics.model_validate(
        economics(table, summary.model_dump(mode="json"), price, s)
    )
    model_config = ModelConfig.model_validate(config["model"])
    summary.batch = batch_summary(
        run_dir, model_config.batch, batch_price_note(model_config, price)
    )
    summary.error_taxonomy = error_taxonomy(latest, manifest, turns=turns, seed=seed)
    summary.flexible = flexible_scores(run_dir, table, latest, episodes=episodes, turns=turns, k=k)
    return summary


def _turns_not_needed(latest: RecordTable, turns: int, after_failure: bool) -> int:
    """Turns never asked because their episode had already ended.

    An episode ends when it runs out of context (a result) or, under ``stop.after_failure``,
    at its first failure. Such turns are not gaps in the run. ``latest`` holds one record
    per (episode, turn), all with ``turn < turns``.
    """
    ends = latest.is_status("context_exceeded") | (after_failure & latest.fails_task())
    episode, turn = latest.episode[ends], latest.turn[ends]
    first_end = np.full(int(episode.max()) + 1 if episode.size else 0, turns)
    np.minimum.at(first_end, episode, turn)
    ended = first_end[first_end < turns]
    return int((turns - 1 - ended).sum())
