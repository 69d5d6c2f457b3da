"""Turn a run directory's records into ``summary.json`` and a short printed table.

Reads only ``manifest.json`` and ``turns.jsonl``, so a summary can be rebuilt at any time
(``lhe-summarize DIR``) with a different ``s`` or bootstrap size, without calling a model.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from harness.analysis.strategy_stats import strategy_summary
from harness.config import ModelConfig, StrategyConfig
from harness.costs import economics, format_usd, load_price_table, resolve_price
from harness.files import atomic_write_json, read_json
from harness.manifest import MANIFEST_FILE
from harness.metrics import FORMAT_ERRORS, column_means, horizon, prop1
from harness.record_table import RecordTable, read_table
from harness.records import TURNS_FILE

SUMMARY_FILE = "summary.json"


def _curve(values: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in values]


def summarize(
    run_dir: Path,
    *,
    s: float | None = None,
    resamples: int | None = None,
    seed: int | None = None,
    status: str | None = None,
    note: str | None = None,
    length_cap: int | None = None,
) -> dict[str, Any]:
    """Compute the summary of a run from its files (arguments override the manifest's)."""
    manifest = read_json(run_dir / MANIFEST_FILE)
    metrics_config = manifest["config"]["metrics"]
    s = metrics_config["s"] if s is None else s
    resamples = metrics_config["bootstrap"] if resamples is None else resamples
    seed = metrics_config["seed"] if seed is None else seed
    shape = manifest["task_set"]
    episodes, turns, k = shape["episodes"], shape["turns"], shape["k"]

    table = read_table(run_dir)
    latest = table.latest()
    scores = latest.score_matrices(episodes=episodes, turns=turns, k=k)
    estimate, curve_ci = horizon(scores, s, resamples=resamples, rng=np.random.default_rng(seed))
    history = manifest["config"].get("history", {"source": "own"})
    # Under a rewritten history the model never builds on its own answers, so task accuracy
    # and the horizon do not measure execution; turn accuracy is the quantity of interest.
    own_history = history.get("source", "own") == "own"
    task_curve = _curve(column_means(scores.task_correct)) if own_history else [None] * turns

    strategy = _strategy(manifest["config"])
    statuses = latest.status_counts()
    model_config = ModelConfig.model_validate(manifest["config"]["model"])
    price = resolve_price(model_config, table.reported_model_id(), load_price_table())
    usage = table.usage()
    scored = int((~np.isnan(scores.index_correct)).sum())
    after_failure = manifest["config"].get("stop", {}).get("after_failure", False)
    if length_cap is None and (run_dir / SUMMARY_FILE).exists():
        length_cap = read_json(run_dir / SUMMARY_FILE).get("length_cap")  # lhe-summarize
    needed = turns if length_cap is None else min(turns, length_cap)
    finished = latest.take(latest.turn < needed)
    unfinished = (
        episodes * needed
        - int((~finished.is_status("provider_error")).sum())
        - _turns_not_needed(finished, needed, after_failure)
    )
    if status is None:
        status = "complete" if unfinished == 0 else "incomplete"
    summary = {
        "model": manifest["provider"]["label"],
        "simulated": manifest["provider"]["simulated"],
        "experiment": manifest["config"]["experiment"]["name"],
        "mode": manifest["config"]["task"]["mode"],
        "k": k,
        "status": status,
        "note": note,
        "episodes": episodes,
        "turns": turns,
        "turns_scored": scored,
        "turns_unfinished": unfinished,
        "length_cap": length_cap,
        "index_accuracy": _curve(column_means(scores.index_correct)),
        "turn_accuracy": _curve(column_means(scores.turn_correct)),
        "task_accuracy": task_curve,
        "ci95": curve_ci,
        "history": history,
        "votes": strategy.n if strategy.name == "majority" else 1,
        "strategy": strategy_summary(table, strategy.model_dump(mode="json"), k),
        "horizon": None
        if not own_history
        else {
            "s": s,
            "steps": estimate.steps,
            "turns": estimate.turns,
            "ci95": list(estimate.ci95) if estimate.ci95 else None,
            "logistic_steps": estimate.logistic_steps,
            "censored": estimate.censored,
        },
        "prop1": prop1(scores, s) if own_history else None,
        "format_errors": sum(statuses[name] for name in FORMAT_ERRORS),
        "format_errors_by_kind": {name: statuses[name] for name in FORMAT_ERRORS},
        "context_exceeded": statuses["context_exceeded"],
        "provider_errors": statuses["provider_error"],
        "provider_errors_total": int(table.is_status("provider_error").sum()),
        "retries": int(table.retries.sum()),
        "retries_by_reason": dict(table.retry_reason_counts().most_common()),
        "usage": usage.model_dump(),
        "mean_latency_s": float(np.mean(table.latency_s)) if len(table) else None,
        "bootstrap": {"resamples": resamples, "seed": seed, "unit": "episode"},
    }
    summary["economics"] = economics(table, summary, price, s)
    return summary


def _strategy(config: dict[str, Any]) -> StrategyConfig:
    """The run's strategy; a manifest from before strategies gives ``run.votes`` as majority."""
    votes = config.get("run", {}).get("votes", 1)
    raw = config.get("strategy") or ({"name": "majority", "n": votes} if votes > 1 else {})
    return StrategyConfig.model_validate(raw)


def _turns_not_needed(latest: RecordTable, turns: int, after_failure: bool) -> int:
    """Turns never asked because their episode had already ended.

    An episode ends when it runs out of context (a result) or, under ``stop.after_failure``,
    at its first failure. Such turns are not gaps in the run. ``latest`` holds one record
    per (episode, turn), all with ``turn < turns``.
    """
    wrong = ~latest.has_answer | (latest.answer != latest.truth)
    failed = ~latest.is_status("provider_error") & wrong
    ends = latest.is_status("context_exceeded") | (after_failure & ~latest.filled & failed)
    episode, turn = latest.episode[ends], latest.turn[ends]
    first_end = np.full(int(episode.max()) + 1 if episode.size else 0, turns)
    np.minimum.at(first_end, episode, turn)
    ended = first_end[first_end < turns]
    return int((turns - 1 - ended).sum())


def write_summary(run_dir: Path, summary: dict[str, Any]) -> Path:
    """Write ``summary.json`` atomically."""
    path = run_dir / SUMMARY_FILE
    atomic_write_json(path, summary)
    return path


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_table(summary: dict[str, Any], run_dir: Path, report_turns: list[int]) -> str:
    """A short human-readable account of a run."""
    label = summary["model"] + (
        "  [SIMULATED executor, not a model]" if summary["simulated"] else ""
    )
    lines = [
        f"model      {label}",
        f"task       dict-sum, K={summary['k']}, mode={summary['mode']}, "
        f"{summary['episodes']} episodes x {summary['turns']} turns ({summary['status']})",
    ]
    if summary.get("note"):
        lines.append(f"note       {summary['note']}")
    h = summary["horizon"]
    if h is None:
        history = summary["history"]
        lines.append(
            f"history    {history['source']} (rate {history.get('rate', 0)}): task accuracy "
            "and horizon do not apply; see turn accuracy"
        )
    else:
        lines += _horizon_lines(h, summary["prop1"])
    target = summary.get("history", {}).get("target_turn")
    shown_turns = sorted({*report_turns, *([target] if target else [])})
    lines += ["", f"{'turn':>6} {'turn acc':>9} {'task acc':>9} {'index acc':>10}"]
    measured = [
        t
        for t in shown_turns
        if 1 <= t <= summary["turns"] and summary["index_accuracy"][t - 1] is not None
    ]
    for turn in measured:
        i = turn - 1
        lines.append(
            f"{turn:>6} {_fmt(summary['turn_accuracy'][i]):>9} "
            f"{_fmt(summary['task_accuracy'][i]):>9} {_fmt(summary['index_accuracy'][i]):>10}"
        )
    usage = summary["usage"]
    lines += [
        "",
        *_strategy_lines(summary.get("strategy")),
        f"errors     format {summary['format_errors']}, provider {summary['provider_errors']}, "
        f"context exceeded {summary['context_exceeded']}, retries {summary['retries']}",
        f"tokens     prompt {usage['prompt_tokens']:,}, completion {usage['completion_tokens']:,}"
        + (" (estimated)" if usage["estimated"] else ""),
        _cost_line(summary.get("economics")),
        f"files      {run_dir / TURNS_FILE}",
        f"           {run_dir / SUMMARY_FILE}",
    ]
    return "\n".join(lines)


def _strategy_lines(block: dict[str, Any] | None) -> list[str]:
    """One line on what a voting strategy drew; nothing for a plain single-sample run."""
    if not block or block.get("samples_per_turn", {}).get("mean") is None:
        return []
    per_turn = block["samples_per_turn"]
    if block["name"] == "single" and per_turn["max"] == 1:
        return []
    label = StrategyConfig.model_validate(
        {key: block[key] for key in StrategyConfig.model_fields if key in block}
    ).label
    margin = block["vote_margin"]["mean"]
    return [
        f"strategy   {label}: {per_turn['mean']:.2f} samples per turn (p95 {per_turn['p95']:g}), "
        f"red flags {100 * (block['red_flag_rate'] or 0):.1f}%, capped turns "
        f"{block['capped_turns']}, mean vote margin {_fmt(margin, 2)}"
    ]


def _cost_line(economics: dict[str, Any] | None) -> str:
    if not economics or economics.get("cost_usd") is None:
        return "cost       unknown (no price for this model; set model.price to get one)"
    line = f"cost       {format_usd(economics['cost_usd'])}"
    per_step = economics.get("usd_per_correct_step")
    if per_step is not None:
        line += f", {format_usd(per_step)} per correct step"
    per_dollar = economics.get("horizon_steps_per_usd")
    if per_dollar is not None:
        line += f", {per_dollar:,.1f} horizon steps per dollar"
    return line


def _horizon_lines(h: dict[str, Any], p1: dict[str, Any]) -> list[str]:
    if h["steps"] is None:
        horizon_text = "n/a (no turn was scored)"
    elif h["censored"]:
        horizon_text = f">= {h['steps']:.0f} steps (task accuracy never fell below {h['s']})"
    else:
        ci = h["ci95"]
        ci_text = f"  95% CI [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else ""
        horizon_text = f"{h['steps']:.1f} steps = {h['turns']:.1f} turns{ci_text}"
    return [
        f"horizon    H_{h['s']:g} = {horizon_text}",
        f"logistic   H_{h['s']:g} = {_fmt(h['logistic_steps'], 1)} steps",
        f"prop. 1    p_hat = {_fmt(p1['p_hat'], 4)} -> predicted "
        f"H = {_fmt(p1['predicted_steps'], 1)} steps",
    ]


def main(argv: list[str] | None = None) -> None:
    """``lhe-summarize DIR``: recompute a run's summary from its records."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--s", type=float, default=None, help="success threshold of H_s")
    parser.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples")
    args = parser.parse_args(argv)
    summary = summarize(args.run_dir, s=args.s, resamples=args.bootstrap)
    write_summary(args.run_dir, summary)
    print(format_table(summary, args.run_dir, [1, 5, 10, 20, 50, 100]))


if __name__ == "__main__":
    main()
