import asyncio

import numpy as np
import pytest

from harness.records.schema import read_records
from harness.run.history import HistoryPolicy
from harness.run.runner import Runner
from providers.base import ChatResult, FatalProviderError, Message, Sampling
from providers.simulated import SimulatedConfig, SimulatedProvider
from tasks.generate import generate_task_set
from tasks.parsing import format_answer
from tasks.prompts import read_dictionary
from testing.scripted import ScriptedProvider


def perfect(messages: list[Message], sampling: Sampling) -> ChatResult:
    """Answer the true running total, computed from the conversation alone."""
    dictionary = read_dictionary(messages[0].content)
    total = sum(
        dictionary[w.strip()] for m in messages if m.role == "user" for w in m.content.split(",")
    )
    return ChatResult(content=format_answer(total))


def make_runner(tmp_path, provider, *, samples=4, turns=5, k=2, mode="direct", concurrency=4):
    task_set = generate_task_set(samples=samples, turns=turns, k=k, seed=1)
    return Runner(
        task_set=task_set,
        provider=provider,
        sampling=Sampling(),
        policy=HistoryPolicy(mode=mode),
        run_dir=tmp_path,
        concurrency=concurrency,
    ), task_set


async def test_perfect_provider_scores_every_turn_right(tmp_path):
    runner, task_set = make_runner(tmp_path, ScriptedProvider(perfect))
    await runner.run()
    records = read_records(tmp_path)
    assert len(records) == task_set.samples * task_set.turns
    assert all(r.answer == r.truth and r.status == "ok" for r in records)


async def test_direct_history_keeps_only_the_answer_tag_and_never_reasoning(tmp_path):
    def chatty(messages, sampling):
        result = perfect(messages, sampling)
        return ChatResult(content="Sure! " + result.content, reasoning="secret thoughts")

    provider = ScriptedProvider(chatty)
    runner, _ = make_runner(tmp_path, provider, samples=1, turns=3)
    await runner.run()
    last = provider.requests[-1]
    assistant = [m.content for m in last if m.role == "assistant"]
    assert len(assistant) == 2
    assert all(a.startswith("<answer>") and a.endswith("</answer>") for a in assistant)
    assert not any("secret" in m.content for m in last)


async def test_cot_history_keeps_the_visible_reply(tmp_path):
    def reasoning_reply(messages, sampling):
        return ChatResult(content="adding up\n" + perfect(messages, sampling).content)

    provider = ScriptedProvider(reasoning_reply)
    runner, _ = make_runner(tmp_path, provider, samples=1, turns=2, mode="cot")
    await runner.run()
    assert provider.requests[-1][2].content.startswith("adding up")


async def test_episodes_do_not_wait_for_each_other(tmp_path):
    """Episode 0 blocks until every other episode has finished all its turns.

    A lock-step runner would deadlock here; the wait_for turns that into a failure.
    """
    samples, turns = 4, 3
    others_done = asyncio.Event()
    finished: set[int] = set()
    task_set = generate_task_set(samples=samples, turns=turns, k=1, seed=1)
    first_user = {task_set.turn_keys(e, 0)[0]: e for e in range(samples)}

    async def script(messages, sampling):
        users = [m for m in messages if m.role == "user"]
        episode = first_user.get(users[0].content)
        if episode == 0 and len(users) == 1:
            await others_done.wait()
        elif len(users) == turns:
            finished.add(episode)
            if len(finished) == samples - 1:
                others_done.set()
        return perfect(messages, sampling)

    # episodes must have distinct first keys for the lookup above
    assert len(first_user) == samples
    runner = Runner(
        task_set=task_set,
        provider=ScriptedProvider(script),
        sampling=Sampling(),
        run_dir=tmp_path,
        concurrency=samples,
    )
    await asyncio.wait_for(runner.run(), timeout=30)
    assert len(read_records(tmp_path)) == samples * turns


async def test_provider_error_ends_the_episode_and_resume_reruns_only_the_missing_turns(tmp_path):
    calls = {"n": 0}

    def flaky(messages, sampling):
        calls["n"] += 1
        users = sum(1 for m in messages if m.role == "user")
        if users == 3:
            return ChatResult(outcome="provider_error", error="HTTP 503")
        return perfect(messages, sampling)

    runner, _task_set = make_runner(tmp_path, ScriptedProvider(flaky), samples=3, turns=5)
    await runner.run()
    first = read_records(tmp_path)
    assert sum(r.status == "provider_error" for r in first) == 3
    assert len(first) == 3 * 3  # two good turns and the failed one per episode

    again = ScriptedProvider(perfect)
    resumed, _ = make_runner(tmp_path, again, samples=3, turns=5)
    progress = await resumed.run()
    assert progress.turns_resumed == 6
    assert len(again.requests) == 3 * 3  # turns 3..5 of each episode, nothing finished twice
    # the history rebuilt on resume is the one an uninterrupted run sends
    reference = ScriptedProvider(perfect)
    uninterrupted, _ = make_runner(tmp_path / "ref", reference, samples=3, turns=5)
    (tmp_path / "ref").mkdir()
    await uninterrupted.run()

    def by_position(requests):
        return {
            tuple(m.content for m in r if m.role == "user"): [m.content for m in r]
            for r in requests
        }

    expected = by_position(reference.requests)
    for key, contents in by_position(again.requests).items():
        assert expected[key] == contents
    final = {(r.episode, r.turn): r for r in read_records(tmp_path)}
    assert all(final[(e, t)].status == "ok" for e in range(3) for t in range(5))


async def test_fatal_error_stops_the_run(tmp_path):
    def fatal(messages, sampling):
        raise FatalProviderError("HTTP 401: bad key")

    runner, _ = make_runner(tmp_path, ScriptedProvider(fatal))
    progress = await runner.run()
    assert progress.fatal_error == "HTTP 401: bad key"
    assert read_records(tmp_path) == []


async def test_simulated_executor_turn_accuracy_is_p_to_the_k(tmp_path):
    provider = SimulatedProvider(SimulatedConfig(p=0.9, seed=3))
    runner, _task_set = make_runner(tmp_path, provider, samples=200, turns=10, k=3, concurrency=50)
    await runner.run()
    records = read_records(tmp_path)
    turn_right = np.mean([r.answer == r.base + r.delta for r in records])
    assert turn_right == pytest.approx(0.9**3, abs=0.03)
