"""Run directories written from hand-made records, for tests of the stages that read them.

A test of the summary, the report or the figures needs a run whose every turn it chose
(a hostile reply, a provider error at turn 3, a label with markup), which no provider run
gives cheaply. :func:`written_run` writes the manifest and the records the runner would write
for a generated task set, then runs the real summarizer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.analysis.run_summary import RunSummary
from harness.analysis.summary import summarize
from harness.config import load_config
from harness.records.manifest import build_manifest, write_manifest
from harness.records.schema import TurnRecord, TurnWriter
from tasks.generate import generate_task_set

AnswerFor = Callable[[int, int, int, int], tuple[str, int | None, str]]
"""``(episode, turn, truth, base) -> (status, answer, reply)``: ``base`` is the total the
history shows before the turn (the last answer given, 0 at the start)."""


def written_run(
    run_dir: Path,
    *,
    samples: int,
    turns: int,
    answer_for: AnswerFor,
    k: int = 1,
    seed: int = 5,
    bootstrap: int = 50,
    simulated: bool = False,
    label: str = "tiny-model",
    history: dict | None = None,
) -> RunSummary:
    """Write a run of ``samples`` x ``turns`` whose replies ``answer_for`` decides; summarize it.

    A ``provider_error`` turn ends its episode (as in the runner) and carries an error text.
    ``history`` is the config's ``history`` section (e.g. ``{"window": 2}``); the records do
    not depend on it, what the summary makes of them may.
    """
    task_set = generate_task_set(samples=samples, turns=turns, k=k, seed=seed)
    config = load_config(
        {
            "model": {"provider": "scripted", "label": label},
            "task": {"samples": samples, "turns": turns, "k": k, "seed": seed},
            "metrics": {"bootstrap": bootstrap},
            "history": history or {},
        }
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(
        run_dir, build_manifest(config, task_set, provider_label=label, simulated=simulated)
    )
    with TurnWriter(run_dir) as writer:
        for episode in range(samples):
            base = 0
            for turn in range(turns):
                truth = int(task_set.turn_truth[episode, turn])
                status, answer, reply = answer_for(episode, turn, truth, base)
                writer.write(
                    TurnRecord(
                        episode=episode,
                        turn=turn,
                        keys=task_set.turn_keys(episode, turn),
                        delta=int(task_set.turn_delta[episode, turn]),
                        truth=truth,
                        base=base,
                        status=status,
                        answer=answer,
                        reply=reply,
                        error="connection reset" if status == "provider_error" else None,
                    )
                )
                if status == "provider_error":
                    break
                if answer is not None:
                    base = answer
    summary = summarize(run_dir)
    summary.write(run_dir)
    return summary
