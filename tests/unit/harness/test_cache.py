import asyncio
from pathlib import Path

from harness.cli import compose_config
from harness.commands import cache_main, parse_duration
from harness.pipeline import execute
from harness.records.schema import read_records
from harness.run.cache import CachedProvider, Endpoint, ResponseCache, request_key
from providers.base import ChatResult, Message, Sampling
from testing.scripted import ScriptedProvider

MESSAGES = [Message("system", "s"), Message("user", "apple")]
ENDPOINT = Endpoint(provider="scripted", label="scripted")


def counting(reply="<answer>1</answer>", outcome="ok"):
    calls = []

    def script(messages, sampling):
        calls.append(messages)
        return ChatResult(content=reply, outcome=outcome)

    return ScriptedProvider(script), calls


async def test_second_identical_request_is_served_from_disk(tmp_path):
    inner, calls = counting()
    provider = CachedProvider(inner, ResponseCache(tmp_path), ENDPOINT)
    first = await provider.chat(MESSAGES, Sampling(seed=1))
    second = await provider.chat(MESSAGES, Sampling(seed=1))
    assert len(calls) == 1
    assert second.content == first.content and second.cache_hit and not first.cache_hit
    assert (provider.stats.hits, provider.stats.misses) == (1, 1)


async def test_seed_and_settings_are_part_of_the_key(tmp_path):
    inner, calls = counting()
    provider = CachedProvider(inner, ResponseCache(tmp_path), ENDPOINT)
    await provider.chat(MESSAGES, Sampling(seed=1))
    await provider.chat(MESSAGES, Sampling(seed=2))
    await provider.chat(MESSAGES, Sampling(seed=1, temperature=0.0))
    assert len(calls) == 3
    a, b = Endpoint("x", label="a"), Endpoint("x", label="b")
    assert request_key(a, MESSAGES, Sampling()) != request_key(b, MESSAGES, Sampling())


async def test_two_servers_serving_one_model_name_do_not_share_entries(tmp_path):
    """The bug: the key held the model label only, so a run against a new server was
    answered with another server's replies."""
    inner, calls = counting()
    local = Endpoint("openai_compatible", "http://127.0.0.1:8000/v1", label="qwen")
    hosted = Endpoint("openai_compatible", "https://api.example.org/v1", label="qwen")
    other_kind = Endpoint("vllm", "http://127.0.0.1:8000/v1", label="qwen")
    for endpoint in (local, hosted, other_kind, local):
        await CachedProvider(inner, ResponseCache(tmp_path), endpoint).chat(MESSAGES, Sampling())
    assert len(calls) == 3  # only the repeated local request was a hit


def test_prune_removes_only_entries_older_than_the_cutoff(tmp_path):
    import os

    cache = ResponseCache(tmp_path)
    result = ChatResult(content="<answer>5</answer>")
    now = 1_000_000_000.0
    ages_days = {"aa" + "0" * 62: 40, "ab" + "0" * 62: 29, "ac" + "0" * 62: 1}
    for key, age in ages_days.items():
        cache.put(key, result)
        path = tmp_path / key[:2] / f"{key}.json"
        os.utime(path, (now - age * 86400, now - age * 86400))
    assert cache.usage().entries == 3
    assert cache.prune(30 * 86400, now=now) == 1
    assert sorted(p.stem for p in cache.entries()) == sorted(list(ages_days)[1:])
    assert cache.get("aa" + "0" * 62) is None and cache.get("ab" + "0" * 62) is not None


def test_lhe_cache_prints_stats_and_rejects_a_bad_duration(tmp_path, capsys):
    import pytest

    ResponseCache(tmp_path).put("ab" + "0" * 62, ChatResult(content="<answer>5</answer>"))
    cache_main(["stats", str(tmp_path)])
    assert "entries    1" in capsys.readouterr().out
    assert parse_duration("30d") == 30 * 86400 and parse_duration("90m") == 5400
    with pytest.raises(SystemExit):
        cache_main(["prune", str(tmp_path), "--older-than", "30 days"])
    assert "--older-than" in capsys.readouterr().err


async def test_errors_and_empty_replies_are_never_cached(tmp_path):
    for reply, outcome in (("", "ok"), ("", "provider_error"), ("x", "context_exceeded")):
        inner, calls = counting(reply, outcome)
        provider = CachedProvider(inner, ResponseCache(tmp_path), ENDPOINT)
        await provider.chat(MESSAGES, Sampling())
        await provider.chat(MESSAGES, Sampling())
        assert len(calls) == 2
    assert not any(tmp_path.rglob("*.json"))


def test_concurrent_writers_in_threads_do_not_corrupt_entries(tmp_path):
    cache = ResponseCache(tmp_path)
    result = ChatResult(content="<answer>5</answer>")

    async def many():
        await asyncio.gather(
            *(asyncio.to_thread(cache.put, "ab" + "0" * 62, result) for _ in range(50))
        )

    asyncio.run(many())
    assert cache.get("ab" + "0" * 62) == result
    assert [p.name for p in tmp_path.rglob("*")] == ["ab", "ab" + "0" * 62 + ".json"]


async def test_a_second_run_with_the_cache_on_requests_nothing(tmp_path):
    cache_dir = tmp_path / "cache"
    overrides = [
        "model=simulated",
        "model.temperature=0",
        "task.samples=3",
        "task.turns=4",
        f"cache.dir={cache_dir}",
        "metrics.bootstrap=0",
    ]
    config = compose_config(overrides)
    first = await execute(config, tmp_path / "a")
    second = await execute(config, tmp_path / "b")
    assert first.cache.misses == 12 and first.cache.hits == 0
    assert second.cache.hits == 12 and second.cache.misses == 0
    a = [(r.episode, r.turn, r.answer) for r in read_records(tmp_path / "a")]
    b = [(r.episode, r.turn, r.answer) for r in read_records(tmp_path / "b")]
    assert sorted(a) == sorted(b)
    assert all(r.cache_hit for r in read_records(Path(tmp_path / "b")))


def test_cache_is_off_by_default_above_temperature_zero():
    assert compose_config(["model=simulated"]).cache.active(0.6) is False
    assert compose_config(["model=simulated", "cache.enabled=on"]).cache.active(0.6) is True
    assert compose_config(["model=simulated"]).cache.active(0.0) is True
