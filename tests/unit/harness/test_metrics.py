import numpy as np
import pytest

from harness.analysis.metrics import per_step_accuracy, score_matrices, task_correctness
from harness.records.schema import TurnRecord
from harness.records.table import RecordTable
from testing import oracles


def record(episode, turn, *, truth, base, delta, answer, status="ok"):
    return TurnRecord(
        episode=episode,
        turn=turn,
        keys=["x"],
        delta=delta,
        truth=truth,
        base=base,
        answer=answer,
        status=status,
    )


def test_turn_accuracy_builds_on_the_models_own_previous_answer():
    # truth: 5, 8 ; the model says 6 (wrong) then 9 (= 6 + 3: a right update on a wrong base)
    records = [
        record(0, 0, truth=5, base=0, delta=5, answer=6),
        record(0, 1, truth=8, base=6, delta=3, answer=9),
    ]
    scores = score_matrices(RecordTable.from_records(records).latest(), episodes=1, turns=2, k=1)
    oracle = oracles.score_matrices(records, episodes=1, turns=2, k=1)
    np.testing.assert_array_equal(scores.task_correct, oracle.task_correct)
    np.testing.assert_array_equal(scores.index_correct, [[0.0, 0.0]])
    np.testing.assert_array_equal(scores.turn_correct, [[0.0, 1.0]])
    np.testing.assert_array_equal(scores.task_correct, [[0.0, 0.0]])


def test_format_errors_and_context_exceeded_are_wrong_but_provider_errors_are_unscored():
    records = [
        record(0, 0, truth=1, base=0, delta=1, answer=None, status="bad_format"),
        record(1, 0, truth=1, base=0, delta=1, answer=1),
        record(1, 1, truth=2, base=1, delta=1, answer=None, status="provider_error"),
        record(2, 0, truth=1, base=0, delta=1, answer=None, status="context_exceeded"),
    ]
    scores = score_matrices(RecordTable.from_records(records).latest(), episodes=3, turns=2, k=1)
    oracle = oracles.score_matrices(records, episodes=3, turns=2, k=1)
    np.testing.assert_array_equal(scores.task_correct, oracle.task_correct)
    assert scores.index_correct[0, 0] == 0.0
    assert np.isnan(scores.index_correct[1, 1])
    assert np.isnan(scores.task_correct[1, 1])
    assert scores.task_correct[2, 1] == 0.0  # a failed episode stays failed


def test_a_later_record_supersedes_a_failed_attempt():
    records = [
        record(0, 0, truth=1, base=0, delta=1, answer=None, status="provider_error"),
        record(0, 0, truth=1, base=0, delta=1, answer=1),
    ]
    scores = score_matrices(RecordTable.from_records(records).latest(), episodes=1, turns=1, k=1)
    oracle = oracles.score_matrices(records, episodes=1, turns=1, k=1)
    np.testing.assert_array_equal(scores.task_correct, oracle.task_correct)
    assert scores.index_correct[0, 0] == 1.0


def test_task_correctness_is_a_prefix_property():
    index = np.array([[1, 1, 0, 1], [1, np.nan, 1, 0], [1, 0, np.nan, np.nan]], dtype=float)
    np.testing.assert_array_equal(
        task_correctness(index),
        np.array([[1, 1, 0, 0], [1, np.nan, np.nan, 0], [1, 0, 0, 0]], dtype=float),
    )


def test_per_step_accuracy_takes_the_kth_root_of_turn_accuracy():
    turn = np.array([[1.0, 0.0, 1.0, 1.0]])
    assert per_step_accuracy(turn, 2) == pytest.approx(0.75**0.5)
