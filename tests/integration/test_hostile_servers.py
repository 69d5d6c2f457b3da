"""Whole runs against a server that misbehaves in every way a real endpoint does.

Each fault kind alone at a rate where it fires often: the run completes with the answers of a
clean run, and the summary counts the retries under the right failure class, exactly as many
as the server says it injected. Persistent failures end as provider errors, which are never
scored; a 10 MB reply is read, and a 10 MB answer is stored cut with its length.
"""

import asyncio
import contextlib
import io
import resource
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from harness.cli import compose_config
from harness.config import ConfigError, RunConfig
from harness.pipeline import execute, prepare
from harness.records.schema import MAX_STORED_CHARS, TURNS_FILE, latest_records, read_records
from providers.openai_compatible import FDS_BESIDES_CONNECTIONS, create
from testing.fake_server import FAST_RETRIES, RETRIED_FAULTS, free_port, running_fake_server
from testing.oracles import first_below

EPISODES, TURNS = 6, 6
SERVER = {"p": 0.8, "retry_after": 0.05, "stall_seconds": 4.0}
FAST_RETRIES = {**FAST_RETRIES, "read_timeout": 10}
FAILURE_CLASS = {
    "429": "429",
    "500": "500",
    "503": "503",
    "stall": "timeout",
    "drop": "connection",
    "malformed": "malformed",
    "no_choices": "no_choices",
    "html": "wrong_content_type",
}
"""The class a client must record for each fault the server injects."""


def config(base_url: str, *overrides: str, **model: float) -> RunConfig:
    """What ``lhe`` would compose for a small run against ``base_url``."""
    settings = {**FAST_RETRIES, **model}
    return compose_config(
        [
            "model=openai_compatible",
            "model.name=fake-model",
            f"model.base_url={base_url}",
            *(f"model.{name}={value}" for name, value in settings.items()),
            f"task.samples={EPISODES}",
            f"task.turns={TURNS}",
            "task.k=2",
            "task.seed=3",
            f"run.concurrency={EPISODES}",
            "run.progress=false",
            "metrics.bootstrap=0",
            "cache.enabled=off",
            *overrides,
        ]
    )


async def run(run_config: RunConfig, run_dir: Path) -> tuple[dict, str]:
    """Summary and printed table of one run."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        summary = await execute(run_config, run_dir)
    return summary, printed.getvalue()


def outcomes(run_dir: Path) -> dict[tuple[int, int], tuple]:
    latest = latest_records(read_records(run_dir))
    return {key: (r.status, r.answer, r.reply) for key, r in latest.items()}


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict[tuple[int, int], tuple]:
    """The answers of the same run against a well-behaved server."""
    run_dir = tmp_path_factory.mktemp("clean")
    with running_fake_server(**SERVER) as server:
        asyncio.run(run(config(server.base_url), run_dir))
    expected = outcomes(run_dir)
    assert len(expected) == EPISODES * TURNS
    assert {status for status, _, _ in expected.values()} == {"ok"}
    return expected


def test_every_injected_fault_has_a_failure_class():
    assert set(FAILURE_CLASS) == set(RETRIED_FAULTS)


@pytest.mark.parametrize("kind", sorted(FAILURE_CLASS))
async def test_one_fault_kind_is_retried_away_and_counted_under_its_class(kind, clean, tmp_path):
    # A stall lasts 4 s, so a 1 s read timeout catches it; it costs a second each, hence the
    # lower rate.
    rate, model = (0.2, {"read_timeout": 1}) if kind == "stall" else (0.3, {})
    with running_fake_server(seed=2, **SERVER, **{f"rate_{kind}": rate}) as server:
        summary, _ = await run(config(server.base_url, **model), tmp_path)
        injected = server.stats()["faults"]
    assert injected[kind] > 0
    assert sum(injected.values()) == injected[kind]  # this kind alone
    assert (summary.status, summary.provider_errors) == ("complete", 0)
    assert outcomes(tmp_path) == clean  # a fault never changes an answer
    assert summary.retries_by_reason == {FAILURE_CLASS[kind]: injected[kind]}
    assert summary.retries == injected[kind]


async def test_mixed_faults_are_counted_class_by_class(clean, tmp_path):
    rates = {f"rate_{kind}": 0.04 for kind in FAILURE_CLASS}
    with running_fake_server(seed=5, **SERVER, **rates) as server:
        summary, _ = await run(config(server.base_url, read_timeout=1), tmp_path)
        injected = server.stats()["faults"]
    expected = {FAILURE_CLASS[kind]: n for kind, n in injected.items() if n and kind != "big_body"}
    assert len(expected) >= 4  # several kinds fired in one run
    assert summary.retries_by_reason == expected
    assert outcomes(tmp_path) == clean


async def test_persistent_failure_gives_provider_errors_that_are_never_scored(tmp_path):
    with running_fake_server(rate_503=1.0, **SERVER) as server:
        summary, _ = await run(config(server.base_url, max_attempts=3), tmp_path)
        injected = server.stats()["faults"]["503"]
    records = read_records(tmp_path)
    assert {(r.turn, r.status, r.answer) for r in records} == {(0, "provider_error", None)}
    assert all(
        r.error.startswith("HTTP 503") and "gave up after 3 attempts" in r.error for r in records
    )
    assert summary.provider_errors == EPISODES
    assert summary.turns_scored == 0 and summary.status == "incomplete"
    assert summary.index_accuracy == summary.turn_accuracy == [None] * TURNS
    # Every attempt but each request's last was retried: the counts add up exactly.
    assert summary.retries_by_reason == {"503": injected - EPISODES}


async def test_persistent_failure_says_why_and_claims_no_horizon(tmp_path):
    with running_fake_server(rate_503=1.0, **SERVER) as server:
        summary, printed = await run(config(server.base_url, max_attempts=2), tmp_path)
    assert "HTTP 503" in (summary.note or "")
    assert "HTTP 503" in printed
    assert summary.horizon.steps is None


async def test_failed_turns_stay_out_of_every_denominator_and_resume_fills_them(clean, tmp_path):
    port = free_port()
    flaky = config(f"http://127.0.0.1:{port}/v1", max_attempts=2)
    with running_fake_server(port=port, seed=1, rate_503=0.5, **SERVER):
        summary, _ = await run(flaky, tmp_path)
    latest = latest_records(read_records(tmp_path)).values()
    failed = [r for r in latest if r.status == "provider_error"]
    scored = [r for r in latest if r.status != "provider_error"]
    assert failed and scored  # some turns gave up, others went through
    assert summary.turns_scored == len(scored)
    assert summary.provider_errors == len(failed)
    for turn in range(TURNS):
        rows = [r.answer == r.truth for r in scored if r.turn == turn]
        expected = float(np.mean(rows)) if rows else None
        assert summary.index_accuracy[turn] == pytest.approx(expected)

    # The same run resumed against a server that behaves: the failed turns are asked again
    # and the run ends with the clean run's answers.
    with running_fake_server(port=port, **SERVER):
        summary, _ = await run(flaky, tmp_path)
    assert summary.status == "complete"
    assert outcomes(tmp_path) == clean


async def test_provider_errors_skew_neither_task_accuracy_nor_the_horizon(tmp_path):
    """At p = 0.97 most episodes are still right when their provider error comes, so scoring
    an error as a failure (or dropping it as a success) moves task accuracy and H_s."""
    with running_fake_server(seed=1, rate_503=0.5, **{**SERVER, "p": 0.97}) as server:
        summary, _ = await run(config(server.base_url, max_attempts=2), tmp_path)
    latest = list(latest_records(read_records(tmp_path)).values())
    assert any(r.status == "provider_error" and r.turn > 0 for r in latest)
    # Task accuracy as Kaplan-Meier, walked turn by turn: an episode is at risk at a turn
    # while it was right at every earlier one; one with a provider error (or no record) there
    # is censored, unknown from then on; S(t) = prod (1 - failed_u / at_risk_u).
    by_key = {(r.episode, r.turn): r for r in latest}
    at_risk, survival, task = set(range(EPISODES)), 1.0, []
    for turn in range(TURNS):
        scored = {
            e for e in at_risk if (e, turn) in by_key and by_key[e, turn].status != "provider_error"
        }
        failed = {e for e in scored if by_key[e, turn].answer != by_key[e, turn].truth}
        if scored:
            survival *= 1 - len(failed) / len(scored)
        task.append(survival if scored else None)
        at_risk = scored - failed
    assert summary.task_accuracy == pytest.approx(task)
    assert summary.horizon.steps == pytest.approx(first_below(task, 0.5, k=2))
    assert None not in task and task[-1] < 0.5 < task[0]  # a crossing inside the run


async def test_a_10_mb_reply_around_a_short_answer_is_read_and_stored_whole(clean, tmp_path):
    with running_fake_server(rate_big_body=1.0, big_body_mb=10, **SERVER) as server:
        summary, _ = await run(config(server.base_url, "task.samples=2", "task.turns=2"), tmp_path)
        assert server.stats()["faults"]["big_body"] == 4
    records = read_records(tmp_path)
    assert summary.status == "complete" and summary.retries == 0
    assert {(r.episode, r.turn): (r.status, r.answer, r.reply) for r in records} == {
        key: value for key, value in clean.items() if key[0] < 2 and key[1] < 2
    }
    assert all(r.reply_chars is None for r in records)


async def test_a_10_mb_answer_is_stored_cut_with_its_length(clean, tmp_path):
    size = 10_000_000
    with running_fake_server(
        rate_big_body=1.0, big_body_mb=size / 1e6, big_body_in_content=True, **SERVER
    ) as server:
        summary, _ = await run(config(server.base_url, "task.samples=2", "task.turns=2"), tmp_path)
    records = read_records(tmp_path)
    assert summary.status == "complete" and len(records) == 4
    for record in records:
        status, answer, short_reply = clean[record.episode, record.turn]
        assert (record.status, record.answer) == (status, answer)  # parsed before the cut
        assert record.reply_chars == size
        assert len(record.reply) == MAX_STORED_CHARS
        assert record.reply.startswith(short_reply)
    assert (tmp_path / TURNS_FILE).stat().st_size < 4 * (MAX_STORED_CHARS + 2_000)
    assert Counter(r.status for r in records) == Counter({"ok": 4})


# The harness's own machine is hostile too: a common default soft limit of 1024 open files
# would make connections past it fail as if the server had dropped them.


@pytest.fixture
def soft_open_file_limit():
    """Lower the soft open-file limit for one test; restore it afterwards."""
    original = resource.getrlimit(resource.RLIMIT_NOFILE)

    def lower(soft: int) -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, original[1]))

    yield lower
    resource.setrlimit(resource.RLIMIT_NOFILE, original)


async def test_a_low_soft_open_file_limit_is_raised_to_fit_every_connection(
    soft_open_file_limit,
):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 1000 + FDS_BESIDES_CONNECTIONS:
        pytest.skip(f"hard open-file limit {hard} is below what the test needs")
    soft_open_file_limit(512)
    provider = create({"name": "m"}, concurrency=1000)
    await provider.aclose()
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 1000 + FDS_BESIDES_CONNECTIONS


async def test_a_hard_open_file_limit_below_the_concurrency_is_a_config_error(monkeypatch):
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (512, 600))
    run_config = compose_config(["model=openai_compatible", "model.name=m", "run.concurrency=1000"])
    with pytest.raises(ConfigError) as info:
        await prepare(run_config)  # before any connection is tried
    assert str(info.value).startswith("run.concurrency: 1000 connections need about")
    assert "\n" not in str(info.value)
