"""Slow, obvious implementations that tests and benchmarks hold the fast code against.

Each one is written over a list of validated :class:`~harness.records.schema.TurnRecord`
objects, one record at a time, the way a reader would compute the quantity by hand; the
columnar code in ``harness.records.table`` and ``harness.analysis`` must agree with them.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from harness.analysis.metrics import ScoreMatrices, task_correctness
from harness.records.schema import UNSCORED_STATUSES, TurnRecord, latest_records


def score_matrices(
    records: list[TurnRecord], *, episodes: int, turns: int, k: int
) -> ScoreMatrices:
    """Score matrices from the latest record of every (episode, turn), turn by turn."""
    index_correct = np.full((episodes, turns), np.nan)
    turn_correct = np.full((episodes, turns), np.nan)
    for (episode, turn), record in latest_records(records).items():
        if record.status in UNSCORED_STATUSES or episode >= episodes or turn >= turns:
            continue
        answer = record.answer
        index_correct[episode, turn] = float(answer is not None and answer == record.truth)
        turn_correct[episode, turn] = float(
            answer is not None and answer == record.base + record.delta
        )
    return ScoreMatrices(
        index_correct=index_correct,
        turn_correct=turn_correct,
        task_correct=task_correctness(index_correct),
        k=k,
    )


def reported_model_id(records: list[TurnRecord]) -> str | None:
    """The model id reported most often (ties: the one seen first), None if never one."""
    ids = Counter(r.model_id for r in records if r.model_id)
    return ids.most_common(1)[0][0] if ids else None


def first_below(curve: list[float | None], s: float, k: int) -> float:
    """Where a task-accuracy curve first falls below ``s``, in steps, read off by hand.

    Accuracy is 1 at length 0 and linear between turns (``k`` steps each); a turn with no
    value keeps the previous one. Never falling below ``s``: the last length observed.
    """
    previous_length, previous = 0.0, 1.0
    for turn, accuracy in enumerate(curve, start=1):
        accuracy = previous if accuracy is None else accuracy
        if accuracy < s:
            fraction = (previous - s) / (previous - accuracy)
            return previous_length + fraction * (turn * k - previous_length)
        previous_length, previous = float(turn * k), accuracy
    return previous_length
