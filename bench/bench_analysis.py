"""Summarizing a long run: 1,000 episodes x 1,000 turns (1M records), 1,000 bootstrap resamples.

Target: under 5 s on 2 cores for the columnar path (``harness.records.table``). The records are
synthetic but written in exactly the format ``TurnWriter`` writes (checked by round-tripping
lines through ``TurnRecord``); answers follow the simulated executor's error model (each key
wrong with probability 1 - p, by a non-zero offset in [-10, 10], building on the previous
answer), with some replies without an answer tag and some retried requests.

Phases are timed side by side: the old path (every line validated into a ``TurnRecord``, then
Python loops over records) on a tenth of the episodes, scaled x10, and the columnar path at both
sizes (fastest of ``--repeat`` runs: other processes share the cores). The horizon phase is the
same code on both paths (``metrics.horizon`` and the survival blocks: Kaplan-Meier curves,
horizons at three thresholds, hazard and its trend test, error dynamics; the bootstrap is a
few weights @ matrix products, never a (resamples, episodes, turns) array), so the old path is
charged the full-size time for it. The same phase is also timed with the estimator the
summary used before Kaplan-Meier (plain per-turn means of task correctness, one horizon),
side by side, for the before/after ratio.
The error taxonomy (``harness.analysis.failures``: every turn classified, plus
the permutation chance baseline and the task set rebuilt from the manifest) is timed against
the same rules written as a loop over records; target under 2 s at 1M turns.

    python bench/bench_analysis.py
    python bench/bench_analysis.py --episodes 300   # smaller full size
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from harness.analysis.failures import (
    classify_answers,
    error_taxonomy,
    one_digit_apart,
    task_set_of,
)
from harness.analysis.metrics import horizon, score_matrices
from harness.analysis.statistics import (
    column_percentiles,
    crossing_points,
    episode_weights,
    percentile_interval,
    weighted_column_means,
)
from harness.analysis.summary import summarize
from harness.analysis.survival_summary import survival_blocks
from harness.cli import compose_config
from harness.economics.costs import economics
from harness.pipeline import make_task_set
from harness.records.manifest import Manifest, build_manifest, read_manifest, write_manifest
from harness.records.schema import TURNS_FILE, TurnRecord, latest_records, read_records
from harness.records.table import read_table
from providers.base import Usage
from testing import oracles

TURNS, RESAMPLES, P = 1000, 1000, 0.999
HORIZON = "horizon + bootstrap"
TAXONOMY = "error taxonomy"
NO_ANSWER, RETRIED = 0.001, 0.002
"""Shares of replies without an answer tag and of requests that needed one retry."""


def write_run(run_dir: Path, episodes: int) -> None:
    """A finished run: manifest plus ``episodes`` x ``TURNS`` records."""
    config = compose_config(
        [
            "model=simulated",
            f"model.p={P}",
            f"task.samples={episodes}",
            f"task.turns={TURNS}",
            f"metrics.bootstrap={RESAMPLES}",
        ]
    )
    task_set = make_task_set(config)
    manifest = build_manifest(config, task_set, provider_label=f"simulated-p{P}", simulated=True)
    run_dir.mkdir(parents=True)
    write_manifest(run_dir, manifest)

    rng = np.random.default_rng(0)
    shape = (episodes, TURNS)
    wrong = rng.random(shape) >= P
    offsets = rng.integers(1, 11, shape) * rng.choice([-1, 1], shape) * wrong
    answers = np.cumsum(task_set.turn_delta + offsets, axis=1)
    bases = np.concatenate([np.zeros((episodes, 1), np.int64), answers[:, :-1]], axis=1)
    tagless = rng.random(shape) < NO_ANSWER
    retried = rng.random(shape) < RETRIED
    model = f"simulated-p{P}"
    with (run_dir / TURNS_FILE).open("w", encoding="utf-8") as out:
        for e in range(episodes):
            delta, truth = task_set.turn_delta[e].tolist(), task_set.turn_truth[e].tolist()
            answer, base = answers[e].tolist(), bases[e].tolist()
            lines = []
            for t in range(TURNS):
                key = task_set.words[task_set.keys[e, t]]
                if tagless[e, t]:
                    status, parsed, reply, shown = "no_answer", "null", "I am not sure", "null"
                else:
                    status, parsed = "ok", answer[t]
                    reply, shown = f"<answer>{answer[t]}</answer>", parsed
                retries, reasons = (1, '{"503":1}') if retried[e, t] else (0, "{}")
                lines.append(
                    f'{{"episode":{e},"turn":{t},"keys":["{key}"],"delta":{delta[t]},'
                    f'"truth":{truth[t]},"base":{base[t]},"status":"{status}","answer":{parsed},'
                    f'"reply":"{reply}","reply_chars":null,"reasoning":null,'
                    f'"usage":{{"prompt_tokens":{900 + 11 * t},"completion_tokens":6,'
                    f'"reasoning_tokens":0,"cached_tokens":0,"estimated":true}},'
                    f'"latency_s":0.0,"finish_reason":"stop","retries":{retries},'
                    f'"retry_reasons":{reasons},"cache_hit":false,"model_id":"{model}",'
                    f'"error":null,"filled":false,"shown":{shown},"shown_text":null,'
                    f'"injected":false,"sample_answers":null,"agreement":null,"n_samples":1,'
                    f'"red_flags":0,"capped":false,"vote_margin":null,"vote_counts":null,'
                    f'"samples":null}}\n'
                )
            if e == 0:
                for line in lines[:50]:  # the writer's exact format, or the bench is void
                    assert TurnRecord.model_validate_json(line).model_dump_json() + "\n" == line
            out.write("".join(lines))


def survival_analysis(scores) -> None:
    """What a summary computes from the score matrices: horizon, curves, survival blocks."""
    estimate, _ = horizon(scores, 0.5, resamples=RESAMPLES, rng=np.random.default_rng(0))
    survival_blocks(scores, estimate)


def plain_mean_horizon(scores) -> None:
    """The estimator before Kaplan-Meier: per-turn means of task correctness, one horizon."""
    weights = episode_weights(np.random.default_rng(0), scores.task_correct.shape[0], RESAMPLES)
    for matrix in (scores.index_correct, scores.turn_correct, scores.task_correct):
        boot = weighted_column_means(matrix, weights)
        column_percentiles(boot, [2.5, 97.5])
    percentile_interval(crossing_points(boot, scores.lengths, 0.5)[0])


def old_counts(records: list[TurnRecord]) -> None:
    """What the old summary computed with loops over records."""
    latest = latest_records(records)
    Counter(r.status for r in latest.values())
    sum((r.usage for r in records if not r.cache_hit and not r.filled), Usage())
    sum(r.retries for r in records)
    sum((Counter(r.retry_reasons) for r in records), Counter())
    sum(1 for r in records if r.status == "provider_error")
    float(np.mean([r.latency_s for r in records]))
    oracles.reported_model_id(records)


def new_counts(run_dir: Path, table) -> None:
    latest = table.latest()
    latest.status_counts()
    table.tokens_spent()
    table.tokens_replayed()
    int(table.retries.sum())
    table.retry_reason_counts()
    int(table.is_status("provider_error").sum())
    float(np.mean(table.latency_s))
    table.reported_model_id()


def timed(phases: dict[str, float], name: str, fn: Callable):
    start = time.perf_counter()
    result = fn()
    phases[name] = time.perf_counter() - start
    return result


def loop_taxonomy(records: list[TurnRecord], manifest: Manifest) -> Counter:
    """The taxonomy's rules as the obvious loop over records (no chance baseline)."""
    task_set = task_set_of(manifest)
    dictionary = set(task_set.values.tolist())
    by_turn = task_set.step_values.reshape(task_set.samples, task_set.turns, task_set.k)
    found: Counter = Counter()
    for record in latest_records(records).values():
        a, b, t = record.answer, record.base, record.truth
        if record.status in ("provider_error", "filled"):
            continue
        if a is None:
            found[record.status] += 1
            continue
        v = by_turn[record.episode, record.turn].tolist()
        u = b + sum(v)
        if a == u:
            found["correct" if a == t else "carried"] += 1
        elif a == t:
            found["recovered"] += 1
        elif a == b:
            found["stale"] += 1
        elif b != 0 and (a == sum(v) or (len(v) > 1 and a == v[-1])):
            found["value_only"] += 1
        elif len(v) > 1 and any(a == u - x for x in v):
            found["skipped_key"] += 1
        elif len(v) > 1 and any(a == u + x for x in v):
            found["doubled_key"] += 1
        elif any(a == u - 2 * x for x in v):
            found["sign_flip"] += 1
        elif any(a - u + x in dictionary for x in v):
            found["wrong_key"] += 1
        elif abs(a - u) <= 10 or one_digit_apart(a, u):
            found["arithmetic"] += 1
        else:
            found["other"] += 1
    return found


def old_path(run_dir: Path, episodes: int) -> dict[str, float]:
    phases: dict[str, float] = {}
    records = timed(phases, "read", lambda: read_records(run_dir))
    scores = timed(
        phases,
        "latest + scores",
        lambda: oracles.score_matrices(records, episodes=episodes, turns=TURNS, k=1),
    )
    timed(phases, HORIZON, lambda: survival_analysis(scores))
    timed(phases, "counts", lambda: old_counts(records))
    summary = summarize(run_dir, resamples=0)  # only for economics' inputs, not timed
    timed(phases, "economics", lambda: economics(records, summary.model_dump(), None, 0.5))
    manifest = read_manifest(run_dir)
    timed(phases, TAXONOMY, lambda: loop_taxonomy(records, manifest))
    return phases


def new_path(run_dir: Path, episodes: int) -> dict[str, float]:
    phases: dict[str, float] = {}
    table = timed(phases, "read", lambda: read_table(run_dir))
    scores = timed(
        phases,
        "latest + scores",
        lambda: score_matrices(table.latest(), episodes=episodes, turns=TURNS, k=1),
    )
    timed(phases, HORIZON, lambda: survival_analysis(scores))
    timed(phases, "counts", lambda: new_counts(run_dir, table))
    summary = summarize(run_dir, resamples=0)  # only for economics' inputs, not timed
    timed(phases, "economics", lambda: economics(table, summary.model_dump(), None, 0.5))
    manifest, latest = read_manifest(run_dir), table.latest()
    timed(phases, TAXONOMY, lambda: error_taxonomy(latest, manifest, turns=TURNS, seed=0))
    return phases


def _seconds(fn: Callable) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def summarize_time(run_dir: Path) -> dict[str, float]:
    phases: dict[str, float] = {}
    timed(phases, "summarize", lambda: summarize(run_dir))
    return phases


def worst_case_classification(turns: int) -> float:
    """Seconds to classify ``turns`` turns whose answers are all wrong (uniform in +-3000)."""
    rng = np.random.default_rng(1)
    values = rng.integers(-99, 100, (turns, 1))
    bases = rng.integers(-3000, 3001, turns)
    answers = rng.integers(-3000, 3001, turns)
    start = time.perf_counter()
    classify_answers(answers, bases, values, bases + values[:, 0], rng.integers(-99, 100, 100))
    return time.perf_counter() - start


def best_of(repeat: int, run: Callable[[], dict[str, float]]) -> dict[str, float]:
    """Fastest time of each phase over ``repeat`` runs (other processes share the cores)."""
    runs = [run() for _ in range(repeat)]
    return {name: min(r[name] for r in runs) for name in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=1000, help="episodes of the full size")
    parser.add_argument("--repeat", type=int, default=3, help="columnar runs; the fastest counts")
    args = parser.parse_args()
    small_episodes = args.episodes // 10
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        small, full = Path(tmp) / "small", Path(tmp) / "full"
        write_run(small, small_episodes)
        write_run(full, args.episodes)
        size_mb = (full / TURNS_FILE).stat().st_size / 1e6
        old = old_path(small, small_episodes)
        new_small = best_of(args.repeat, lambda: new_path(small, small_episodes))
        new_full = best_of(args.repeat, lambda: new_path(full, args.episodes))
        end_to_end = best_of(args.repeat, lambda: summarize_time(full))["summarize"]
        scores = score_matrices(read_table(full).latest(), episodes=args.episodes, turns=TURNS, k=1)
        estimators = best_of(
            args.repeat,
            lambda: {
                "before": _seconds(lambda: plain_mean_horizon(scores)),
                "after": _seconds(lambda: survival_analysis(scores)),
            },
        )
        worst = min(worst_case_classification(args.episodes * TURNS) for _ in range(args.repeat))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(
        f"full size: {args.episodes} episodes x {TURNS} turns = {args.episodes * TURNS:,} records "
        f"({size_mb:.0f} MB), {RESAMPLES} bootstrap resamples"
    )
    small_label = f"{small_episodes * TURNS // 1000}k"
    print(
        f"{'phase':<22} {'pydantic ' + small_label + ' x10':>18} {'columnar ' + small_label:>14} "
        f"{'columnar full':>14} {'ratio':>7}"
    )
    # The horizon is the same code on both paths and does not scale with episodes alone, so
    # the old path is charged the full-size measurement rather than a scaled small one.
    old = {**{name: 10 * value for name, value in old.items()}, HORIZON: new_full[HORIZON]}
    for name, before in old.items():
        if name in new_full:
            after = new_full[name]
            cells = f"{new_small[name]:>13.3f}s {after:>13.3f}s {before / after:>6.0f}x"
        else:
            cells = f"{'-':>14} {'-':>14} {'':>7}"
        print(f"{name:<22} {before:>17.2f}s {cells}")
    small_total, new_total = sum(new_small.values()), sum(new_full.values())
    print(
        f"{'sum of phases':<22} {sum(old.values()):>17.2f}s {small_total:>13.3f}s "
        f"{new_total:>13.3f}s"
    )
    print(
        f"horizon phase at full size: plain means (before) {estimators['before']:.3f} s, "
        f"Kaplan-Meier + survival blocks (after) {estimators['after']:.3f} s, "
        f"ratio after/before {estimators['after'] / estimators['before']:.2f}"
    )
    taxonomy_verdict = "met" if new_full[TAXONOMY] < 2 else "MISSED"
    print(
        f"error taxonomy, full size: {new_full[TAXONOMY]:.2f} s (target < 2 s: {taxonomy_verdict})"
    )
    print(
        f"classification alone, every turn wrong (random answers), full size: {worst:.2f} s "
        f"(target < 2 s: {'met' if worst < 2 else 'MISSED'})"
    )
    verdict = "met" if end_to_end < 5 else "MISSED"
    print(f"summarize() end to end, full size: {end_to_end:.2f} s (target < 5 s: {verdict})")
    print(f"peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
