"""Is one run's horizon longer than another's? ``lhe-compare RUN_A RUN_B [...]``.

Runs on the same task set (same fingerprint in the manifest, so episode i is the same keys in
every run) are compared by a *paired* bootstrap: one resample of episode indices is applied
to every run and the difference (or ratio) of horizons is read off each resample. Episodes
that are hard for one model tend to be hard for the other, so the paired interval of a
difference is narrower than one from independent resamples. Runs on different task sets get
independent resamples (unpaired), and the output says so. Horizons are Kaplan-Meier ones
(:mod:`harness.analysis.survival`), as in the summary.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.analysis.metrics import ScoreMatrices, column_means, score_matrices
from harness.analysis.statistics import (
    bootstrap_p_value,
    crossing_points,
    episode_weights,
    percentile_interval,
    weighted_column_means,
)
from harness.analysis.survival import SurvivalFit
from harness.files import atomic_write_json, read_json
from harness.records.manifest import MANIFEST_FILE
from harness.records.table import read_table

COMPARISON_FILE = "comparison.json"
COMPARED_TURNS = (1, 10, 50, 100)
"""1-based turns whose turn-accuracy difference is reported (those within both runs)."""


class CompareError(ValueError):
    """Runs that cannot be compared, phrased as one line naming the field."""


@dataclass(frozen=True)
class Run:
    """What a comparison needs of one run directory."""

    path: Path
    label: str
    fingerprint: str | None
    k: int
    s: float
    scores: ScoreMatrices


def load_run(path: Path) -> Run:
    """Scores and identity of a run, from its manifest and records."""
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.exists():
        raise CompareError(f"{path}: no {MANIFEST_FILE} (not a run directory)")
    manifest = read_json(manifest_path)
    shape = manifest["task_set"]
    if manifest["config"].get("history", {}).get("source", "own") != "own":
        raise CompareError(f"history.source: {path} has a rewritten history (no horizon)")
    table = read_table(path).latest()
    scores = score_matrices(table, episodes=shape["episodes"], turns=shape["turns"], k=shape["k"])
    return Run(
        path=path,
        label=manifest["provider"]["label"],
        fingerprint=shape.get("fingerprint"),
        k=int(shape["k"]),
        s=float(manifest["config"]["metrics"]["s"]),
        scores=scores,
    )


def _same(runs: Sequence[Run], field: str, values: Sequence[Any]) -> None:
    if len(set(values)) > 1:
        listed = ", ".join(f"{run.path}: {value}" for run, value in zip(runs, values, strict=True))
        raise CompareError(f"{field}: runs differ ({listed})")


def _boot_horizons(fit: SurvivalFit, lengths: np.ndarray, s: float) -> np.ndarray:
    return crossing_points(fit.boot_curves, lengths, s)[0]


def _interval(samples: np.ndarray) -> list[float] | None:
    interval = percentile_interval(samples)
    return list(interval) if interval else None


def compare_runs(
    runs: Sequence[Run],
    *,
    baseline: int = 0,
    s: float | None = None,
    resamples: int = 1000,
    seed: int = 0,
    paired: bool | None = None,
) -> dict[str, Any]:
    """The comparison of every run against ``runs[baseline]`` (see the module docstring).

    ``paired`` None pairs exactly when every run has the same task-set fingerprint and
    episode count; False forces independent resamples (to see what pairing buys).
    """
    if len(runs) < 2:
        raise CompareError("runs: need at least two runs to compare")
    _same(runs, "k", [run.k for run in runs])
    if s is None:
        _same(runs, "metrics.s", [run.s for run in runs])
        s = runs[0].s
    same_set = (
        len({run.fingerprint for run in runs}) == 1
        and runs[0].fingerprint is not None
        and len({run.scores.index_correct.shape[0] for run in runs}) == 1
    )
    paired = same_set if paired is None else (paired and same_set)
    seeds = np.random.SeedSequence(seed).spawn(len(runs))
    shared = None
    if paired:
        shared = episode_weights(
            np.random.default_rng(seed), runs[0].scores.index_correct.shape[0], resamples
        )
    fits, boots, turn_boots = [], [], []
    for run, child in zip(runs, seeds, strict=True):
        episodes = run.scores.index_correct.shape[0]
        weights = (
            shared if paired else episode_weights(np.random.default_rng(child), episodes, resamples)
        )
        fit = SurvivalFit.of(run.scores.index_correct, weights)
        fits.append(fit)
        boots.append(_boot_horizons(fit, run.scores.lengths, s))
        turn_boots.append(weighted_column_means(run.scores.turn_correct, weights))
    horizons = [fit.horizon(run.scores.lengths, s) for fit, run in zip(fits, runs, strict=True)]
    base = runs[baseline]
    rows = []
    for i, run in enumerate(runs):
        if i == baseline:
            continue
        h, hb = horizons[i], horizons[baseline]
        with np.errstate(invalid="ignore", divide="ignore"):
            diff = boots[i] - boots[baseline]
            ratio = boots[i] / boots[baseline]
        turns = min(run.scores.turn_correct.shape[1], base.scores.turn_correct.shape[1])
        turn_rows = []
        for turn in (t for t in COMPARED_TURNS if t <= turns):
            a = column_means(run.scores.turn_correct)[turn - 1]
            b = column_means(base.scores.turn_correct)[turn - 1]
            samples = turn_boots[i][:, turn - 1] - turn_boots[baseline][:, turn - 1]
            turn_rows.append(
                {
                    "turn": turn,
                    "estimate": None if np.isnan(a - b) else float(a - b),
                    "ci95": _interval(samples),
                }
            )
        both = h.steps is not None and hb.steps is not None
        rows.append(
            {
                "run": str(run.path),
                "baseline": str(base.path),
                "censored": h.censored or hb.censored,
                "h_difference": {
                    "estimate": h.steps - hb.steps if both else None,
                    "ci95": _interval(diff),
                },
                "h_ratio": {
                    "estimate": h.steps / hb.steps if both and hb.steps else None,
                    "ci95": _interval(ratio),
                },
                "p_value": bootstrap_p_value(diff),
                "turn_accuracy_difference": turn_rows,
            }
        )
    return {
        "s": s,
        "k": runs[0].k,
        "paired": paired,
        "pairing": (
            "paired: one resample of episode indices applied to every run (same task set)"
            if paired
            else "unpaired: independent resamples per run"
            + ("" if same_set else " (the runs do not share a task set)")
        ),
        "resamples": resamples,
        "seed": seed,
        "runs": [
            {"run": str(run.path), "model": run.label, **h.as_dict(run.k)}
            for run, h in zip(runs, horizons, strict=True)
        ],
        "comparisons": rows,
    }


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ci(pair: list[float] | None, digits: int = 2) -> str:
    return "n/a" if not pair else f"[{pair[0]:.{digits}f}, {pair[1]:.{digits}f}]"


def comparison_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per compared run: for tables (console, sweep report)."""
    models = {run["run"]: run for run in result["runs"]}
    rows = []
    for row in result["comparisons"]:
        run, base = models[row["run"]], models[row["baseline"]]
        flat = {
            "run": row["run"],
            "model": run["model"],
            "baseline": base["model"],
            "H": run["steps"],
            "H_baseline": base["steps"],
            "H_diff": row["h_difference"]["estimate"],
            "H_diff_lo": (row["h_difference"]["ci95"] or [None, None])[0],
            "H_diff_hi": (row["h_difference"]["ci95"] or [None, None])[1],
            "H_ratio": row["h_ratio"]["estimate"],
            "H_ratio_lo": (row["h_ratio"]["ci95"] or [None, None])[0],
            "H_ratio_hi": (row["h_ratio"]["ci95"] or [None, None])[1],
            "p_value": row["p_value"],
            "censored": row["censored"],
            "paired": result["paired"],
        }
        for turn in row["turn_accuracy_difference"]:
            flat[f"turn_acc_diff_{turn['turn']}"] = turn["estimate"]
        rows.append(flat)
    return rows


def format_comparison(result: dict[str, Any]) -> str:
    """The console table of ``lhe-compare``."""
    lines = [
        f"H_{result['s']:g} in steps, K={result['k']}, {result['resamples']} resamples; "
        f"{result['pairing']}",
        "",
        f"{'model':<24} {'H':>8} {'H - base':>9} {'95% CI':>18} {'ratio':>6} "
        f"{'95% CI':>14} {'p':>7}",
    ]
    runs = {run["run"]: run for run in result["runs"]}
    base = runs[result["comparisons"][0]["baseline"]]
    lines.append(f"{base['model'][:24]:<24} {_num(base['steps'], 1):>8} {'(baseline)':>9}")
    for row in result["comparisons"]:
        run = runs[row["run"]]
        mark = " (censored: a bound)" if row["censored"] else ""
        lines.append(
            f"{run['model'][:24]:<24} {_num(run['steps'], 1):>8} "
            f"{_num(row['h_difference']['estimate'], 1):>9} "
            f"{_ci(row['h_difference']['ci95'], 1):>18} {_num(row['h_ratio']['estimate']):>6} "
            f"{_ci(row['h_ratio']['ci95']):>14} {_num(row['p_value'], 3):>7}{mark}"
        )
        diffs = ", ".join(
            f"turn {t['turn']}: {_num(t['estimate'], 3)} {_ci(t['ci95'], 3)}"
            for t in row["turn_accuracy_difference"]
        )
        if diffs:
            lines.append(f"{'':<24} turn accuracy - base: {diffs}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``lhe-compare RUN_A RUN_B [...]``: horizons against a baseline, with paired intervals."""
    parser = argparse.ArgumentParser(prog="lhe-compare", description=main.__doc__)
    parser.add_argument("runs", type=Path, nargs="+", help="run directories")
    parser.add_argument("--baseline", type=Path, default=None, help="default: the first run")
    parser.add_argument("--s", type=float, default=None, help="threshold (default: the runs')")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for comparison.json")
    args = parser.parse_args(argv)
    paths = list(args.runs)
    if args.baseline is not None and args.baseline not in paths:
        paths.insert(0, args.baseline)
    baseline = 0 if args.baseline is None else paths.index(args.baseline)
    try:
        runs = [load_run(path) for path in paths]
        result = compare_runs(
            runs, baseline=baseline, s=args.s, resamples=args.bootstrap, seed=args.seed
        )
    except CompareError as exc:
        print(f"lhe-compare: error: {exc}", file=sys.stderr)
        sys.exit(2)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / COMPARISON_FILE, result)
    print(format_comparison(result))
    print(f"\nwritten: {args.out / COMPARISON_FILE}")


if __name__ == "__main__":
    main()


def sweep_comparison(
    root: Path, runs: Sequence[str], baseline: str | None = None, resamples: int = 1000
) -> tuple[dict[str, Any], list[str]] | None:
    """The comparison table of a sweep: every run with the baseline's K and s against it.

    ``baseline`` names a run (its folder under ``root``) or a model label; default the first
    run with a horizon. Returns the comparison and the runs left out (with why), or None
    when fewer than two runs can be compared.
    """
    loaded, skipped = [], []
    for name in runs:
        try:
            loaded.append(load_run(root / name))
        except CompareError as exc:
            skipped.append(f"{name}: {exc}")
    if not loaded:
        return None
    chosen = 0
    if baseline is not None:
        matches = [
            i
            for i, run in enumerate(loaded)
            if baseline in (run.path.name, str(run.path), run.label)
        ]
        if matches:
            chosen = matches[0]
        else:
            skipped.append(f"report.baseline: no run named {baseline!r}; the first run is used")
    base = loaded[chosen]
    same = [run for run in loaded if run.k == base.k and run.s == base.s]
    skipped += [f"{run.path.name}: k or metrics.s differs from the baseline's" for run in loaded
                if run not in same]  # fmt: skip
    if len(same) < 2:
        return None
    result = compare_runs(same, baseline=same.index(base), resamples=resamples)
    return result, skipped
