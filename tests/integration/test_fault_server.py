"""Whole runs through harness.pipeline.execute against the fault-injecting server on 127.0.0.1."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from harness.config import ConfigError
from harness.pipeline import execute, make_task_set
from harness.records.schema import TURNS_FILE, read_records
from providers.base import FatalProviderError, Message, Sampling
from providers.openai_compatible import create
from tasks.prompts import system_prompt
from testing.fake_server import FAULTS, RETRIED_FAULTS, free_port

# 20% of attempts get one of the faults a real endpoint produces, 2.5% each.
MIXED_FAULTS = {f"rate_{kind}": 0.025 for kind in sorted(RETRIED_FAULTS)}
FAULT_SEED = 5  # a seed under which every kind fires at least once in this run
SERVER = {"p": 0.8, "retry_after": 0.05, "stall_seconds": 30.0}


def outcomes(run_dir: Path) -> dict[tuple[int, int], tuple]:
    return {(r.episode, r.turn): (r.status, r.answer, r.reply) for r in read_records(run_dir)}


async def test_faults_are_retried_away_and_every_retry_is_an_injected_fault(
    fake_server, run_config, tmp_path
):
    clean = fake_server(**SERVER)
    await execute(run_config(clean.base_url), tmp_path / "clean")
    expected = outcomes(tmp_path / "clean")
    assert len(expected) == 6 * 8
    assert {status for status, _, _ in expected.values()} == {"ok"}
    assert len({answer for _, answer, _ in expected.values()}) > 1

    stats = []
    for attempt in ("first", "second"):
        faulty = fake_server(seed=FAULT_SEED, **SERVER, **MIXED_FAULTS)
        summary = await execute(run_config(faulty.base_url), tmp_path / attempt)
        records = read_records(tmp_path / attempt)
        assert outcomes(tmp_path / attempt) == expected
        injected = faulty.stats()["faults"]
        retried = sum(injected[kind] for kind in RETRIED_FAULTS)
        assert sum(r.retries for r in records) == retried == summary.retries
        stats.append(injected)
    # every kind in the mix fired, and the same faults were drawn on both runs
    assert all(stats[0][name.removeprefix("rate_")] > 0 for name in MIXED_FAULTS)
    assert stats[0] == stats[1]


async def test_exhausted_retries_are_provider_errors_and_never_scored(
    fake_server, run_config, tmp_path
):
    server = fake_server(rate_503=1.0)
    config = run_config(server.base_url, model={"max_attempts": 3}, task={"turns": 4})
    summary = await execute(config, tmp_path)
    records = read_records(tmp_path)
    assert [(r.turn, r.status, r.retries) for r in records] == [(0, "provider_error", 2)] * 6
    assert all("HTTP 503" in r.error and r.answer is None for r in records)
    assert server.stats()["faults"]["503"] == 6 * 3
    assert summary.turns_scored == 0 and summary.provider_errors == 6
    assert summary.status == "incomplete"


async def test_context_exceeded_is_recorded_once_and_ends_the_episode(
    fake_server, run_config, tmp_path
):
    config = run_config("http://127.0.0.1:9/v1", task={"k": 1, "turns": 6})
    task_set = make_task_set(config)
    system = system_prompt(task_set.dictionary, config.task.mode, task_set.k)
    # 5-letter keys and 18-21 character answer tags: turn 2 (3 keys, 2 answers) is the first
    # conversation longer than 45 characters beyond the system prompt.
    server = fake_server(max_context_chars=len(system) + 45)
    config = run_config(server.base_url, task={"k": 1, "turns": 6})
    summary = await execute(config, tmp_path)
    records = read_records(tmp_path)
    by_episode = {e: [r.status for r in records if r.episode == e] for e in range(6)}
    assert set(map(tuple, by_episode.values())) == {("ok", "ok", "context_exceeded")}
    assert all(r.retries == 0 for r in records)
    assert all("context length" in r.error for r in records if r.status == "context_exceeded")
    assert server.stats()["faults"]["context_exceeded"] == 6  # each sent once, never retried
    assert summary.context_exceeded == 6 and summary.provider_errors == 0


async def test_wrong_key_stops_the_run_before_any_turn(
    fake_server, run_config, tmp_path, monkeypatch
):
    server = fake_server(env={"LHE_SERVER_KEY": "sk-right"}, api_key_env="LHE_SERVER_KEY")
    monkeypatch.setenv("LHE_TEST_WRONG_KEY", "sk-wrong")
    config = run_config(server.base_url, model={"api_key_env": "LHE_TEST_WRONG_KEY"})
    with pytest.raises(FatalProviderError, match=r"^model\.api_key_env: .*HTTP 401"):
        await execute(config, tmp_path)
    assert not read_records(tmp_path)
    assert server.stats()["requests"] == 0


async def test_unreachable_server_is_a_preflight_error(run_config, tmp_path):
    config = run_config(f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(FatalProviderError, match=r"^model\.base_url: cannot connect to "):
        await execute(config, tmp_path)
    assert not (tmp_path / TURNS_FILE).exists()


async def test_missing_key_variable_is_a_config_error(run_config, tmp_path, monkeypatch):
    monkeypatch.delenv("LHE_TEST_UNSET_KEY", raising=False)
    config = run_config("http://127.0.0.1:9/v1", model={"api_key_env": "LHE_TEST_UNSET_KEY"})
    with pytest.raises(ConfigError, match=r"^model\.api_key_env: .*LHE_TEST_UNSET_KEY is not set"):
        await execute(config, tmp_path)


async def _one_chat(base_url: str, run_config, **options):
    config = run_config(base_url, task={"samples": 1, "turns": 1})
    task_set = make_task_set(config)
    messages = [
        Message("system", system_prompt(task_set.dictionary, "direct", task_set.k)),
        Message("user", ", ".join(task_set.turn_keys(0, 0))),
    ]
    provider = create({**config.model.provider_options(), **options}, concurrency=1)
    try:
        return await provider.chat(messages, Sampling(seed=1)), task_set
    finally:
        await provider.aclose()


async def test_big_replies_are_read_whole(fake_server, run_config):
    server = fake_server(rate_big_body=1.0, big_body_mb=3)
    result, task_set = await _one_chat(server.base_url, run_config)
    assert (result.outcome, result.retries) == ("ok", 0)
    assert result.content == f"<answer>{task_set.turn_truth[0, 0]}</answer>"
    assert server.stats()["faults"]["big_body"] == 1


@pytest.mark.parametrize("kind", ["malformed", "no_choices", "html"])
async def test_unusable_replies_get_a_few_retries_then_a_provider_error(
    fake_server, run_config, kind
):
    server = fake_server(**{f"rate_{kind}": 1.0})
    result, _ = await _one_chat(server.base_url, run_config, max_malformed_retries=2)
    assert (result.outcome, result.retries, result.content) == ("provider_error", 2, "")
    assert server.stats()["faults"][kind] == 3


def test_fault_table_and_retried_set_agree():
    assert set(RETRIED_FAULTS) < set(FAULTS)
    assert set(FAULTS) - set(RETRIED_FAULTS) == {"big_body"}


def _lhe(run_dir: Path, base_url: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [
        str(Path(sys.executable).parent / "lhe"),
        "model=openai_compatible",
        "model.name=fake-model",
        f"model.base_url={base_url}",
        "model.api_key_env=LHE_FAKE_KEY",
        "model.backoff_initial=0.01",
        "model.backoff_jitter=0.01",
        "model.max_retry_after=0.1",
        "task.samples=3",
        "task.turns=3",
        "run.progress=false",
        "metrics.bootstrap=0",
        "cache.enabled=off",
        f"hydra.run.dir={run_dir}",
    ]
    return subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )


def test_the_key_is_written_to_no_file_and_no_output(fake_server, tmp_path):
    key = f"sk-lhe-test-{uuid.uuid4().hex}"
    server = fake_server(
        env={"LHE_SERVER_KEY": key}, api_key_env="LHE_SERVER_KEY", rate_500=0.2, retry_after=0.05
    )
    good = _lhe(tmp_path / "good", server.base_url, {"LHE_FAKE_KEY": key})
    assert good.returncode == 0, good.stderr
    assert len(read_records(tmp_path / "good")) == 9
    # A wrong key that is one character off: the server echoes it in its 401 message.
    wrong = key[:-1] + ("0" if key[-1] != "0" else "1")
    bad = _lhe(tmp_path / "bad", server.base_url, {"LHE_FAKE_KEY": wrong})
    assert bad.returncode != 0 and "model.api_key_env" in bad.stderr
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == TURNS_FILE for p in files)
    for path in files:
        content = path.read_bytes()
        assert key.encode() not in content and wrong.encode() not in content, path
    for output in (good.stdout, good.stderr, bad.stdout, bad.stderr):
        assert key not in output and wrong not in output
