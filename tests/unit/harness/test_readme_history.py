"""README promises about what the model is shown and what a turn is scored against."""

import asyncio

import pytest

from harness.analysis.metrics import score_matrices
from harness.records.schema import read_records
from harness.records.table import RecordTable
from harness.run.history import HistoryPolicy
from harness.run.runner import Runner
from providers.base import ChatResult, Sampling
from tasks.generate import generate_task_set
from testing.scripted import ScriptedProvider


def run(tmp_path, replies, *, window=None, mode="direct", turns=3):
    """One episode whose replies come from ``replies(turn, truth_so_far)``."""
    task_set = generate_task_set(samples=1, turns=turns, k=1, seed=4)
    truth = task_set.turn_truth[0]

    def script(messages, sampling):
        turn = sum(m.role == "user" for m in messages) - 1 if window is None else None
        return replies(turn, messages, truth)

    provider = ScriptedProvider(script)
    runner = Runner(
        task_set=task_set,
        provider=provider,
        sampling=Sampling(),
        run_dir=tmp_path,
        concurrency=1,
        window=window,
        policy=HistoryPolicy(mode=mode),
    )
    asyncio.run(runner.run())
    records = sorted(read_records(tmp_path), key=lambda r: r.turn)
    return task_set, records, provider.requests


def by_call():
    """Replies by call number: off by 7 at 0, no answer at 1, then a right update on 0's."""
    calls = []

    def replies(turn, messages, truth):
        calls.append(None)
        call = len(calls) - 1
        if call == 0:
            return ChatResult(content=f"<answer>{truth[0] + 7}</answer>")  # wrong by 7
        if call == 1:
            return ChatResult(content="I cannot say.")
        # this turn's values added to the last parsed answer (turn 1's keys are not added)
        return ChatResult(content=f"<answer>{truth[0] + 7 + truth[2] - truth[1]}</answer>")

    return replies


@pytest.mark.parametrize("window", [None, 1], ids=["full_history", "window1"])
def test_after_an_unparseable_reply_the_base_is_the_last_parsed_answer(tmp_path, window):
    """Turn 2 follows a reply without an answer; its base is turn 0's answer (truth + 7), even
    under history.window=1, where turn 0's exchange is no longer sent."""
    task_set, records, requests = run(tmp_path, by_call(), window=window)
    assert [r.status for r in records] == ["ok", "no_answer", "ok"]
    assert records[2].base == records[0].answer == task_set.turn_truth[0, 0] + 7
    if window == 1:
        sent = [m.content for m in requests[2]]
        assert records[0].reply not in sent  # the base's own exchange is out of the window
    scores = score_matrices(RecordTable.from_records(records).latest(), episodes=1, turns=3, k=1)
    assert scores.turn_correct.tolist() == [[0.0, 0.0, 1.0]]
    assert scores.index_correct.tolist() == [[0.0, 0.0, 0.0]]


@pytest.mark.parametrize("mode", ["thinking", "direct", "cot"])
def test_reasoning_never_goes_back_into_the_history(tmp_path, mode):
    """Reasoning from the provider's channel or a <think> block is never sent again; a direct
    history holds just the answer tag, a CoT history the visible reply."""

    def replies(turn, messages, truth):
        return ChatResult(
            content=f"<think>SECRET-{turn}</think>visible work <answer>{truth[turn]}</answer>",
            reasoning=f"CHANNEL-{turn}",
        )

    _, records, requests = run(tmp_path, replies, mode=mode, turns=4)
    assert all(r.status == "ok" for r in records)
    for messages in requests:
        history = [m.content for m in messages if m.role == "assistant"]
        assert not any("SECRET" in text or "CHANNEL" in text for text in history)
        for text, record in zip(history, records, strict=False):
            if mode == "cot":
                assert text == f"visible work <answer>{record.answer}</answer>"
            else:
                assert text == f"<answer>{record.answer}</answer>"
    assert records[0].reasoning == "CHANNEL-0"  # kept in the record, just not re-sent
