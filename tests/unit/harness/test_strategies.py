"""Execution strategies: the sampling loop, red flags, seeds, records and replays."""

import hashlib
import warnings
from collections import Counter

import numpy as np
import pytest

from harness.cli import compose_config
from harness.config import ConfigError, RedFlagConfig, StrategyConfig, load_config
from harness.records.schema import read_records
from harness.run.cache import CachedProvider, Endpoint, ResponseCache
from harness.run.runner import Runner
from harness.run.strategies import draw_turn, sample_seed
from providers.base import ChatResult, Message, Sampling, Usage
from providers.simulated import SimulatedConfig, SimulatedProvider
from tasks.generate import generate_task_set
from tasks.parsing import format_answer
from testing.scripted import ScriptedProvider

SEEDS = {sample_seed(0, 0, 0, i): i for i in range(500)}
"""Seed -> sample index of turn (0, 0) of run seed 0: scripts answer by index."""


def by_index(replies):
    """A script whose reply to sample i is ``replies(i)`` (an int answer or a ChatResult)."""

    def script(messages, sampling):
        assert sampling.n == 1  # every sample is its own request
        reply = replies(SEEDS[sampling.seed])
        if isinstance(reply, ChatResult):
            return reply
        text = "no idea" if reply is None else format_answer(reply)
        return ChatResult(content=text, usage=Usage(prompt_tokens=10, completion_tokens=2))

    return script


async def draw(strategy, replies):
    provider = ScriptedProvider(by_index(replies))
    result = await draw_turn(
        provider, [Message("user", "x")], Sampling(), strategy, lambda i: sample_seed(0, 0, 0, i)
    )
    return result, provider


def sequential_ahead_by_k(answers, k, cap):
    """The obvious one-at-a-time race: (samples drawn, winner or None if capped)."""
    counts = Counter()
    for drawn, answer in enumerate(answers[:cap], start=1):
        counts[answer] += 1
        top = counts.most_common(2)
        if top[0][1] - (top[1][1] if len(top) > 1 else 0) >= k:
            return drawn, top[0][0]
    return cap, None


def test_sample_seeds_are_distinct_and_sample_zero_keeps_the_single_sample_seed():
    old = int.from_bytes(hashlib.blake2b(b"7:3:11", digest_size=4).digest(), "little")
    assert sample_seed(7, 3, 11, 0) == old & 0x7FFFFFFF
    seeds = {sample_seed(7, e, t, i) for e in range(5) for t in range(5) for i in range(20)}
    assert len(seeds) == 5 * 5 * 20
    assert sample_seed(7, 3, 11, 2) == sample_seed(7, 3, 11, 2)


async def test_ahead_by_k_stops_at_the_first_lead_of_k_on_a_hand_built_race():
    race = [7, 8, 7, 7, 8, 7, 7]  # leads 1, 0, 1, 2: decided by the 4th sample
    result, provider = await draw(StrategyConfig(name="ahead_by_k", k=2), race.__getitem__)
    assert len(provider.requests) == 4 and result.winner.parsed.answer == 7
    fields = result.record_fields()
    assert fields["n_samples"] == 4 and fields["vote_margin"] == 2 and not fields["capped"]
    assert fields["vote_counts"] == [[7, 3], [8, 1]]
    assert fields["sample_answers"] == [7, 8, 7, 7]
    assert result.combined().usage.prompt_tokens == 40  # every sample is paid for


@pytest.mark.parametrize("k", [1, 2, 3, 4])
async def test_batched_draws_match_the_one_at_a_time_race(k):
    """Batches of (k - lead) requests must never draw past where a sequential race stops."""
    rng = np.random.default_rng(k)
    for _ in range(150):
        answers = [int(a) for a in rng.choice([1, 2, 3], size=40, p=[0.6, 0.3, 0.1])]
        cap = int(rng.integers(k, 30))
        strategy = StrategyConfig(name="ahead_by_k", k=k, max_samples=cap)
        result, provider = await draw(strategy, answers.__getitem__)
        drawn, winner = sequential_ahead_by_k(answers, k, cap)
        assert len(provider.requests) == drawn
        assert result.capped == (winner is None)
        if winner is not None:
            assert result.winner.parsed.answer == winner


async def test_capped_race_takes_the_plurality_answer():
    race = [5, 6, 5, 6, 5, 6, 6, 5, 9, 6]  # never 3 ahead within 10
    result, _ = await draw(StrategyConfig(name="ahead_by_k", k=3, max_samples=10), race.__getitem__)
    assert result.capped and result.winner.parsed.answer == 6  # 5 votes against 4
    assert result.record_fields()["capped"] is True


async def test_red_flagged_samples_are_redrawn_counted_apart_and_never_vote():
    def replies(i):
        if i in (0, 2):  # overlong: would win the vote if it counted
            return ChatResult(content=format_answer(99), usage=Usage(completion_tokens=500))
        if i == 1:
            return None  # no parseable answer
        return 4

    strategy = StrategyConfig(
        name="majority", n=3, red_flag=RedFlagConfig(max_tokens=100, format_errors=True)
    )
    result, provider = await draw(strategy, replies)
    fields = result.record_fields()
    assert len(provider.requests) == 6  # 3 flagged, then 3 valid votes
    assert fields["red_flags"] == 3 and fields["n_samples"] == 6
    assert [s.red_flag for s in fields["samples"]] == ["overlong", "format", "overlong"] + [
        None
    ] * 3
    assert fields["vote_counts"] == [[4, 3]] and result.winner.parsed.answer == 4


async def test_without_red_flags_an_overlong_sample_votes():
    def replies(i):
        return ChatResult(content=format_answer(99), usage=Usage(completion_tokens=500))

    result, _ = await draw(StrategyConfig(name="majority", n=3), replies)
    assert result.winner.parsed.answer == 99 and result.record_fields()["red_flags"] == 0


async def test_every_sample_red_flagged_scores_the_first_as_parsed_and_marks_the_cap():
    strategy = StrategyConfig(max_samples=4, red_flag=RedFlagConfig(format_errors=True))
    result, provider = await draw(strategy, lambda i: None)
    assert len(provider.requests) == 4 and result.capped
    assert result.winner.index == 0 and result.winner.parsed.status == "no_answer"


async def test_a_provider_error_in_any_sample_makes_the_turn_a_provider_error():
    def replies(i):
        if i == 1:
            return ChatResult(outcome="provider_error", error="503", usage=Usage(prompt_tokens=1))
        return 3

    result, _ = await draw(StrategyConfig(name="majority", n=3), replies)
    assert result.winner is None and result.combined().outcome == "provider_error"
    assert result.combined().usage.prompt_tokens == 21  # the two answered samples, and it


def test_run_votes_is_an_alias_of_majority_with_a_deprecation_note():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = compose_config(["model=simulated", "run.votes=5"])
    assert config.strategy.name == "majority" and config.strategy.n == 5
    assert config.run.votes == 1
    assert any("strategy=majority strategy.n=5" in str(w.message) for w in caught)
    with pytest.raises(ConfigError, match=r"^run.votes: deprecated alias .*ahead_by_k\)$"):
        compose_config(["model=simulated", "run.votes=5", "strategy=ahead_by_k"])


def test_bad_strategy_values_fail_in_one_line_naming_the_field():
    with pytest.raises(ConfigError, match=r"^strategy.max_samples: must be >= strategy.k=5"):
        compose_config(["model=simulated", "strategy=ahead_by_k", "strategy.k=5",
                        "strategy.max_samples=4"])  # fmt: skip
    with pytest.raises(ConfigError, match=r"^strategy.name: Input should be 'single'"):
        load_config({"model": {"provider": "simulated"}, "strategy": {"name": "best_of"}})
    with pytest.raises(ConfigError, match=r"^strategy: no preset named 'ahead'"):
        compose_config(["model=simulated", "strategy=ahead"])


def runner_for(tmp_path, provider, strategy, *, samples=3, turns=6, **kwargs):
    task_set = generate_task_set(samples=samples, turns=turns, k=1, seed=4)
    tmp_path.mkdir(exist_ok=True)
    return Runner(
        task_set=task_set,
        provider=provider,
        sampling=Sampling(temperature=0.6),
        run_dir=tmp_path,
        concurrency=4,
        strategy=strategy,
        **kwargs,
    )


async def test_the_majority_answer_goes_into_the_history_and_the_record(tmp_path):
    def script(messages, sampling):
        index = next(
            i for i in range(3) if sample_seed(0, *episode_turn(messages), i) == sampling.seed
        )
        return ChatResult(content=[format_answer(7), "no idea", format_answer(7)][index])

    def episode_turn(messages):
        return 0, sum(m.role == "user" for m in messages) - 1

    provider = ScriptedProvider(script)
    runner = runner_for(
        tmp_path, provider, StrategyConfig(name="majority", n=3), samples=1, turns=3
    )
    await runner.run()
    records = read_records(tmp_path)
    assert all(r.answer == 7 and r.agreement == pytest.approx(2 / 3) for r in records)
    assert records[0].sample_answers == [7, None, 7] and records[0].n_samples == 3
    assert records[0].vote_counts == [(7, 2), (None, 1)]
    assert [s.seed for s in records[0].samples] == [sample_seed(0, 0, 0, i) for i in range(3)]
    assistant = [m.content for m in provider.requests[-1] if m.role == "assistant"]
    assert assistant == [format_answer(7)] * 2


SIMULATED = Endpoint(provider="simulated", label="simulated-p0.7")


def turns_of(run_dir):
    return [
        (r.episode, r.turn, r.answer, r.sample_answers, r.n_samples)
        for r in sorted(read_records(run_dir), key=lambda r: (r.episode, r.turn))
    ]


async def test_a_cached_rerun_replays_the_same_votes_without_a_request(tmp_path):
    strategy = StrategyConfig(name="ahead_by_k", k=2)
    cache = ResponseCache(tmp_path / "cache")
    first = CachedProvider(SimulatedProvider(SimulatedConfig(p=0.7)), cache, SIMULATED)
    await runner_for(tmp_path / "a", first, strategy).run()
    again = CachedProvider(SimulatedProvider(SimulatedConfig(p=0.7)), cache, SIMULATED)
    await runner_for(tmp_path / "b", again, strategy).run()
    assert again.stats.misses == 0 and again.stats.hits == first.stats.misses
    assert turns_of(tmp_path / "a") == turns_of(tmp_path / "b")
    assert all(r.cache_hit for r in read_records(tmp_path / "b"))
    assert max(n for *_, n in turns_of(tmp_path / "a")) > 2  # some races went past k


async def test_a_resumed_run_draws_the_same_votes_as_an_uninterrupted_one(tmp_path):
    strategy = StrategyConfig(name="ahead_by_k", k=2)
    whole, part = tmp_path / "whole", tmp_path / "part"
    await runner_for(whole, SimulatedProvider(SimulatedConfig(p=0.7)), strategy).run()
    part.mkdir()
    lines = (whole / "turns.jsonl").read_text().splitlines(keepends=True)
    (part / "turns.jsonl").write_text("".join(lines[: len(lines) // 2]))
    resumed = ScriptedProvider(SimulatedProvider(SimulatedConfig(p=0.7)).chat)
    await runner_for(part, resumed, strategy).run()
    assert turns_of(part) == turns_of(whole)
    assert 0 < sum(1 for r in read_records(part)) - len(lines) // 2 < len(lines)
