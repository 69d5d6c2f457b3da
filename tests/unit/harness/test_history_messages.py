"""The exact messages a provider receives, for every mode and every history source.

Expected texts are built here with the test's own formatting and arithmetic from the task
set's dictionary, not with the harness's layout function; the offsets and misread lines of an
injected history are the policy's seeded draws, read through its public ``injection``.
"""

import re

import pytest

from harness.records.schema import read_records
from harness.run.history import HistoryPolicy, injection
from harness.run.runner import Runner
from providers.base import ChatResult, Message, Sampling
from tasks.generate import generate_task_set
from tasks.prompts import system_prompt
from testing.recording import RecordingProvider
from testing.scripted import ScriptedProvider

SAMPLES, TURNS, K = 3, 6, 3
RATE, SEED, MAGNITUDE = 0.5, 11, 10
HIDDEN = "HIDDEN-REASONING"
OWN_WORKING = "I add them up:\n1 + zzzzz (2) = 3"


def own_value(messages):
    """What the scripted model answers: a number that tells the turn apart (never the truth)."""
    return 100_000 + sum(m.role == "assistant" for m in messages)


def own_reply(messages, sampling):
    value = own_value(messages)
    content = f"<think>{HIDDEN}</think>\n{OWN_WORKING}\n<answer>{value}</answer>\n"
    return ChatResult(content=content, reasoning=HIDDEN)


def make_task_set():
    return generate_task_set(samples=SAMPLES, turns=TURNS, k=K, seed=8)


def expected_turn(task_set, mode, source, episode, turn, *, called):
    """The assistant message of one turn as the history must show it."""
    if source == "own" and called:
        if mode == "cot":  # the model's visible reply, reasoning removed
            return f"{OWN_WORKING}\n<answer>{100_000 + turn}</answer>"
        return f"<answer>{100_000 + turn}</answer>"
    truth = int(task_set.turn_truth[episode, turn])
    keys = task_set.turn_keys(episode, turn)
    offset, line = 0, None
    if source == "injected":
        drawn = injection(SEED, episode, turn, RATE, MAGNITUDE, len(keys))
        offset, line = drawn.offset, drawn.line
    if mode != "cot":
        return f"<answer>{truth + offset}</answer>"
    total = truth - sum(task_set.dictionary[w] for w in keys)  # the truth before this turn
    lines = []
    for index, word in enumerate(keys):
        value = task_set.dictionary[word] + (offset if index == line else 0)
        lines.append(f"{total} + {word} ({value}) = {total + value}")
        total += value
    return "\n".join([*lines, f"<answer>{total}</answer>"])


def episode_of(task_set, request):
    users = [m.content for m in request.messages if m.role == "user"]
    matches = [
        e
        for e in range(SAMPLES)
        if users == [", ".join(task_set.turn_keys(e, t)) for t in range(len(users))]
    ]
    assert len(matches) == 1
    return matches[0]


def expected_request(task_set, mode, source, episode, turn, first_called):
    messages = [Message("system", system_prompt(task_set.dictionary, mode, K))]
    for earlier in range(turn):
        messages.append(Message("user", ", ".join(task_set.turn_keys(episode, earlier))))
        text = expected_turn(
            task_set, mode, source, episode, earlier, called=earlier >= first_called
        )
        messages.append(Message("assistant", text))
    messages.append(Message("user", ", ".join(task_set.turn_keys(episode, turn))))
    return messages


def runner(tmp_path, provider, mode, source, first_called):
    return Runner(
        task_set=make_task_set(),
        provider=provider,
        sampling=Sampling(),
        run_dir=tmp_path,
        concurrency=SAMPLES,
        policy=HistoryPolicy(source=source, rate=RATE, magnitude=MAGNITUDE, seed=SEED, mode=mode),
        first_called_turn=first_called,
    )


@pytest.mark.parametrize("first_called", [0, 4], ids=["every-turn-called", "filled-to-turn-5"])
@pytest.mark.parametrize("source", ["own", "healed", "injected"])
@pytest.mark.parametrize("mode", ["direct", "cot", "thinking"])
async def test_every_request_holds_exactly_the_history_of_its_mode_and_source(
    tmp_path, mode, source, first_called
):
    task_set = make_task_set()
    provider = RecordingProvider(ScriptedProvider(own_reply))
    await runner(tmp_path, provider, mode, source, first_called).run()

    assert len(provider.requests) == SAMPLES * (TURNS - first_called)
    seen = set()
    for request in provider.requests:
        episode = episode_of(task_set, request)
        turn = sum(m.role == "user" for m in request.messages) - 1
        seen.add((episode, turn))
        expected = expected_request(task_set, mode, source, episode, turn, first_called)
        assert list(request.messages) == expected
        assert all(HIDDEN not in m.content for m in request.messages)
    assert seen == {(e, t) for e in range(SAMPLES) for t in range(first_called, TURNS)}

    for record in read_records(tmp_path):
        written = record.filled or source != "own"
        text = expected_turn(
            task_set, mode, source, record.episode, record.turn, called=not record.filled
        )
        assert record.shown_text == (text if written else None)


LINE = re.compile(r"^(-?\d+) \+ ([a-z]+) \((-?\d+)\) = (-?\d+)$")


@pytest.mark.parametrize("source", ["healed", "injected"])
async def test_cot_history_lines_add_up_and_an_injected_turn_has_one_misread_line(tmp_path, source):
    """Checked on the messages alone, with no expected text: the shape a model would see."""
    task_set = make_task_set()
    provider = RecordingProvider(ScriptedProvider(own_reply))
    await runner(tmp_path, provider, "cot", source, TURNS - 1).run()
    injected_turns = 0
    for request in provider.requests:
        episode = episode_of(task_set, request)
        assistants = [m.content for m in request.messages if m.role == "assistant"]
        assert len(assistants) == TURNS - 1
        for turn, text in enumerate(assistants):
            keys = task_set.turn_keys(episode, turn)
            truth = int(task_set.turn_truth[episode, turn])
            *lines, tag = text.split("\n")
            parsed = [LINE.fullmatch(line) for line in lines]
            assert len(parsed) == K and all(parsed)
            befores, words, values, afters = zip(
                *[(int(m[1]), m[2], int(m[3]), int(m[4])) for m in parsed], strict=True
            )
            assert list(words) == keys
            assert befores[0] == (int(task_set.turn_truth[episode, turn - 1]) if turn else 0)
            assert all(b + v == a for b, v, a in zip(befores, values, afters, strict=True))
            assert list(befores[1:]) == list(afters[:-1])
            assert tag == f"<answer>{afters[-1]}</answer>"
            misread = [v - task_set.dictionary[w] for w, v in zip(words, values, strict=True)]
            wrong = [d for d in misread if d != 0]
            if source == "healed":
                assert wrong == [] and afters[-1] == truth
            else:
                assert len(wrong) <= 1  # the injected line is the only wrong one
                assert afters[-1] - truth == sum(wrong)  # the wrong total follows from it
                injected_turns += bool(wrong)
    if source == "injected":
        assert 0 < injected_turns < SAMPLES * (TURNS - 1)  # rate 0.5: some of each


async def test_injected_records_match_the_cot_text_they_store(tmp_path):
    provider = RecordingProvider(ScriptedProvider(own_reply))
    await runner(tmp_path, provider, "cot", "injected", 0).run()
    records = read_records(tmp_path)
    assert any(r.injected for r in records) and not all(r.injected for r in records)
    for record in records:
        tag = record.shown_text.rsplit("\n", 1)[1]
        assert tag == f"<answer>{record.shown}</answer>"
        assert record.injected == (record.shown != record.truth)


async def test_resume_rebuilds_the_written_cot_history_byte_for_byte(tmp_path):
    task_set = make_task_set()
    first_called = 2

    def fails_at_turn_4(messages, sampling):
        if sum(m.role == "user" for m in messages) == 4:
            return ChatResult(outcome="provider_error", error="HTTP 503")
        return own_reply(messages, sampling)

    broken = RecordingProvider(ScriptedProvider(fails_at_turn_4))
    await runner(tmp_path, broken, "cot", "injected", first_called).run()
    again = RecordingProvider(ScriptedProvider(own_reply))
    await runner(tmp_path, again, "cot", "injected", first_called).run()
    assert len(again.requests) == SAMPLES * (TURNS - 3)  # turns 4..6 of each episode
    for request in again.requests:
        episode = episode_of(task_set, request)
        turn = sum(m.role == "user" for m in request.messages) - 1
        expected = expected_request(task_set, "cot", "injected", episode, turn, first_called)
        assert list(request.messages) == expected


def test_a_cot_turn_cannot_be_written_without_its_keys():
    with pytest.raises(ValueError, match="keys and values"):
        HistoryPolicy(source="healed", mode="cot").rewritten(0, 0, truth=5)
    assert HistoryPolicy(source="healed").rewritten(0, 0, truth=5).text == "<answer>5</answer>"
