"""Bias of the horizon when episodes stop early: Kaplan-Meier against plain per-turn means.

A complete simulated run (p = 0.95, 600 episodes x 40 turns, the issue's example), then two
copies of its ``turns.jsonl``: every episode cut after turn 10 (what a run stopped at turn 10
leaves) and 60% of episodes cut at a random turn, independently of how they did. Each copy
is summarized by ``lhe-summarize``'s code; the plain-mean horizon (the estimator before
Kaplan-Meier) is computed from the same records beside it. The logistic (METR-style) horizon
of the summary (fitted to the Kaplan-Meier task accuracy) is printed beside the same fit to
the share of successes among the episodes whose outcome is known at each length (a failed
episode stays a failure after it stopped; the estimator before).

    python bench/bench_censoring.py
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from harness.analysis.metrics import column_means, score_matrices
from harness.analysis.statistics import crossing_points, logistic_crossing, logistic_fit
from harness.analysis.summary import summarize
from harness.cli import compose_config
from harness.event_loop import run_async
from harness.pipeline import execute
from harness.records.schema import TURNS_FILE
from harness.records.table import read_table

EPISODES, TURNS = 600, 40


def plain_mean_horizon(run_dir: Path) -> tuple[float, bool]:
    scores = score_matrices(read_table(run_dir).latest(), episodes=EPISODES, turns=TURNS, k=1)
    crossing, censored = crossing_points(
        column_means(scores.task_correct)[None, :], scores.lengths, 0.5
    )
    return float(crossing[0]), bool(censored[0])


def known_prefix_logistic_horizon(run_dir: Path) -> float:
    """The logistic fit over every known prefix outcome, cut episodes' failures included."""
    scores = score_matrices(read_table(run_dir).latest(), episodes=EPISODES, turns=TURNS, k=1)
    known = ~np.isnan(scores.task_correct)
    successes = np.where(known, scores.task_correct, 0.0).sum(axis=0)
    fit = logistic_fit(np.log2(scores.lengths), successes, known.sum(axis=0).astype(float))
    return float(2.0 ** logistic_crossing(*fit, 0.5))


def cut(run_dir: Path, target: Path, last_turn: np.ndarray) -> Path:
    shutil.copytree(run_dir, target)
    lines = (run_dir / TURNS_FILE).read_text().splitlines(keepends=True)
    kept = [
        line
        for line in lines
        if (record := json.loads(line))["turn"] < last_turn[record["episode"]]
    ]
    (target / TURNS_FILE).write_text("".join(kept))
    return target


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        complete = Path(tmp) / "complete"
        overrides = ["model=simulated", "model.p=0.95", f"task.turns={TURNS}",
                     f"task.samples={EPISODES}", "run.progress=false"]  # fmt: skip
        with contextlib.redirect_stdout(io.StringIO()):
            run_async(execute(compose_config(overrides), complete))
        rng = np.random.default_rng(11)
        cases = {
            "complete": complete,
            "cut after turn 10": cut(complete, Path(tmp) / "ten", np.full(EPISODES, 10)),
            "60% cut at a random turn": cut(
                complete,
                Path(tmp) / "random",
                np.where(rng.random(EPISODES) < 0.6, rng.integers(1, TURNS, EPISODES), TURNS),
            ),
        }
        print(
            f"{'run':<26} {'Kaplan-Meier H_0.5':>34} {'plain means H_0.5':>22}"
            f" {'logistic H_0.5':>15} {'logistic, known prefixes':>25}"
        )
        for name, run_dir in cases.items():
            h = summarize(run_dir).horizon
            km = (
                f">= {h.steps:g} (censored)"
                if h.censored
                else f"{h.steps:.2f} [{h.ci95[0]:.2f}, {h.ci95[1]:.2f}]"
            )
            plain, plain_censored = plain_mean_horizon(run_dir)
            print(
                f"{name:<26} {km:>34} {plain:>13.2f}{' (censored)' if plain_censored else '':>9}"
                f" {h.logistic_steps:>14.2f}{'*' if h.logistic_extrapolated else ' '}"
                f" {known_prefix_logistic_horizon(run_dir):>25.2f}"
            )
        print("* past the longest length run: the fit's extrapolation (logistic_extrapolated)")


if __name__ == "__main__":
    main()
