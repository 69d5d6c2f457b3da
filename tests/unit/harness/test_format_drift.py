import pytest

from harness.analysis.format_drift import DRIFT_WARNING, FormatDrift, drift_warning, format_drift
from harness.records.schema import TurnRecord

WORKING = "0 + apple (5) = 5\n<answer>5</answer>"
BARE = "<answer>5</answer>"


def record(episode, turn, reply, status="ok", **extra):
    return TurnRecord(
        episode=episode,
        turn=turn,
        keys=["apple"],
        delta=5,
        truth=5,
        base=0,
        status=status,
        answer=5 if status == "ok" else None,
        reply=reply,
        **extra,
    )


def test_drift_counts_the_visible_replies_of_called_turns_only():
    records = [
        record(0, 0, WORKING),
        record(0, 1, BARE),
        record(0, 2, "0 + apple (5) = 5, so the total is five", status="no_answer"),
        record(0, 3, "", status="filled", filled=True, shown_text=WORKING),
        record(1, 0, "", status="provider_error", error="HTTP 503"),
        record(1, 0, BARE),  # the resumed attempt of the same turn
        record(1, 1, "", status="context_exceeded", error="too long"),
        record(1, 2, "<think>0 + apple (5) = 5</think>" + BARE),  # working never shown
    ]
    drift = format_drift(records)
    assert (drift.replies, drift.without_working) == (5, 3)
    assert drift.share == pytest.approx(3 / 5)
    assert format_drift([]).share is None


def test_the_warning_appears_only_above_a_fifth():
    def drift(without, replies):
        return FormatDrift(replies=replies, without_working=without, share=without / replies)

    assert drift_warning(drift(1, 5)) is None  # exactly 20%
    assert drift_warning(None) is None  # not a CoT run
    warning = drift_warning(drift(2, 8))
    assert "25%" in warning and "2 of 8" in warning and DRIFT_WARNING in warning
