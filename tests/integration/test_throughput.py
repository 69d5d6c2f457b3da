"""``run.concurrency=auto`` and ``run.workers`` give the records of a fixed single-process run.

Whole runs through ``harness.run.execute`` against the fake server on 127.0.0.1, whose
replies are a function of the request (simulated answers at p = 0.8 from the request's
seed), so every configuration must produce the same turns. The server also answers 429
beyond 3 requests in flight, so the adaptive limit really decreases and pauses.
"""

import asyncio
import contextlib
import functools
import io
import re
from pathlib import Path

import pytest

from harness.config import ConfigError, load_config
from harness.pipeline import execute
from harness.records.schema import fails_task, read_records
from harness.run.progress import ProgressLine
from harness.run.workers import SHARDS_DIR, merge_shards
from providers.concurrency import LIMIT_LOG, read_limit_log
from testing.fake_server import running_fake_server

EPISODES, TURNS = 12, 6
FAST = {
    "backoff_initial": 0.01,
    "backoff_max": 0.05,
    "backoff_jitter": 0.01,
    "max_retry_after": 0.2,
    "max_attempts": 20,
}


def config(base_url: str, **run):
    return load_config(
        {
            "model": {
                "provider": "openai_compatible",
                "name": "fake-model",
                "base_url": base_url,
                "max_tokens": 16,
                **FAST,
            },
            "task": {"samples": EPISODES, "turns": TURNS, "k": 2, "seed": 3},
            "run": {"seed": 1, "progress": False, **run},
            "metrics": {"bootstrap": 0},
        }
    )


def run(cfg, run_dir: Path) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        return asyncio.run(execute(cfg, run_dir))


MEASURED = ("keys", "truth", "base", "status", "answer", "reply", "shown", "usage")


def turns(run_dir: Path) -> dict:
    """Everything a turn measured, by (episode, turn); fails if any turn was asked twice."""
    records = read_records(run_dir)
    by_turn = {(r.episode, r.turn): tuple(getattr(r, f) for f in MEASURED) for r in records}
    assert len(by_turn) == len(records) == EPISODES * TURNS
    return by_turn


@pytest.fixture(scope="module")
def server():
    with running_fake_server(
        p=0.8, max_in_flight=3, retry_after=0.1, latency_median=0.02
    ) as running:
        yield running


@pytest.fixture(scope="module")
def reference(server, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("fixed")
    summary = run(config(server.base_url, concurrency=3), run_dir)  # never over the limit
    assert summary.retries == 0
    return turns(run_dir), summary


@pytest.mark.parametrize(
    "settings",
    [
        {"concurrency": "auto", "concurrency_min": 1, "concurrency_max": 8},
        {"concurrency": 6, "workers": 3},
        {"concurrency": "auto", "concurrency_max": 8, "workers": 2},
        {"concurrency": "auto", "concurrency_max": 10, "workers": 5},
        {"concurrency": 4, "workers": EPISODES + 2},
    ],
    ids=["auto", "3 workers", "auto, 2 workers", "auto, 5 workers", "idle workers"],
)
def test_same_records_as_a_fixed_single_process_run(server, reference, settings, tmp_path):
    """Five workers split the twelve episodes unevenly (3, 3, 2, 2, 2); with more workers
    than episodes, two have none."""
    expected, expected_summary = reference
    summary = run(config(server.base_url, **settings), tmp_path)
    assert turns(tmp_path) == expected
    for field in ("turn_accuracy", "task_accuracy", "index_accuracy", "horizon", "tokens_spent"):
        assert getattr(summary, field) == getattr(expected_summary, field)
    assert not (tmp_path / SHARDS_DIR).exists()  # merged and removed


def test_auto_backs_off_logs_its_limit_and_reports_its_range(server, tmp_path):
    settings = {"concurrency": "auto", "concurrency_min": 2, "concurrency_max": 16}
    summary = run(config(server.base_url, **settings), tmp_path)
    events = list(read_limit_log(tmp_path))
    overloads = [e for e in events if e.event == "overload"]
    assert overloads, "the limit never went past the server's 3"
    assert summary.retries_by_reason["429"] == len(overloads)  # each one logged
    block = summary.concurrency
    assert block.min_limit == min(e.limit for e in events) == 2  # starts at the minimum
    assert block.max_limit == max(e.limit for e in events) > 3
    assert block.decreases >= 1 and block.pauses == len(overloads)
    assert events[-1].event == "end"
    assert (tmp_path / "concurrency.png").exists()
    assert 'alt="adaptive concurrency limit' in (tmp_path / "report.html").read_text()


def test_workers_under_auto_share_one_limit(tmp_path):
    """``auto`` held at one request in flight, two workers: the endpoint sees one at a time.

    Two limits of their own (or the range split between them) would let each worker send one.
    """
    with running_fake_server(p=0.8, latency_median=0.02) as quiet:
        settings = {"concurrency": "auto", "concurrency_min": 1, "concurrency_max": 1}
        run(config(quiet.base_url, **settings, workers=2), tmp_path)
        assert quiet.stats()["max_in_flight"] == 1
    assert len(read_records(tmp_path)) == EPISODES * TURNS


def test_a_fixed_limit_writes_no_side_file(server, reference, tmp_path):
    summary = run(config(server.base_url, concurrency=3), tmp_path)
    assert summary.concurrency is None and not (tmp_path / LIMIT_LOG).exists()


def test_shards_left_by_a_killed_session_are_merged_once(tmp_path):
    (tmp_path / "turns.jsonl").write_text('{"a": 1}\n')
    for index, lines in (("0", '{"b": 2}\n{"c": 3}\n{"torn"'), ("1", '{"d": 4}\n')):
        shard = tmp_path / SHARDS_DIR / index
        shard.mkdir(parents=True)
        (shard / "turns.jsonl").write_text(lines)
    assert merge_shards(tmp_path) == 3
    assert merge_shards(tmp_path) == 0
    assert (tmp_path / "turns.jsonl").read_text() == '{"a": 1}\n{"b": 2}\n{"c": 3}\n{"d": 4}\n'


def test_auto_needs_an_endpoint(tmp_path):
    cfg = load_config(
        {"model": {"provider": "simulated"}, "run": {"concurrency": "auto", "progress": False}}
    )
    with pytest.raises(ConfigError, match=r"^run\.concurrency: auto adapts to an HTTP endpoint"):
        run(cfg, tmp_path)


@pytest.mark.parametrize(
    ("section", "value", "message"),
    [
        ("budget", {"max_usd": 1.0}, "run.workers: budget.max_usd needs every turn counted"),
        ("stop", {"when_decided": True}, "run.workers: stop.when_decided needs every turn"),
        ("run", {"concurrency_min": 9, "concurrency_max": 8}, "run.concurrency_min: must be <="),
        ("run", {"concurrency": "sometimes"}, "run.concurrency"),
    ],
)
def test_combinations_that_cannot_work_are_one_line_errors(section, value, message):
    raw = {"model": {"provider": "simulated"}, "run": {"workers": 2}}
    raw[section] = {**raw.get(section, {}), **value}
    with pytest.raises(ConfigError) as info:
        load_config(raw)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


LINE = re.compile(
    r"(\d+)/(\d+) episodes \| [\d.]+ turns/s \| episodes without a failure (\d+)% \| "
    r"([\d,]+) tokens \| cost unknown"
)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_the_progress_line_counts_every_workers_turns(server, tmp_path, monkeypatch, workers):
    """The last line drawn (after the workers exited) counts what the shards recorded."""
    stream = io.StringIO()
    shown = functools.partial(ProgressLine, stream=stream, force=True)
    monkeypatch.setattr("harness.pipeline.ProgressLine", shown)
    run(config(server.base_url, concurrency=6, workers=workers, progress=True), tmp_path)

    last = stream.getvalue().split("\r")[-1].strip()
    done, total, alive, tokens = LINE.fullmatch(last).groups()
    records = read_records(tmp_path)  # the shards, merged
    failed = {r.episode for r in records if fails_task(r)}
    assert (int(done), int(total)) == (EPISODES, EPISODES)
    assert int(tokens.replace(",", "")) == sum(
        r.usage.prompt_tokens + r.usage.completion_tokens for r in records
    )
    assert int(alive) == round(100 * (EPISODES - len(failed)) / EPISODES)
    assert 0 < len(failed) < EPISODES  # p = 0.8: the share is neither 0% nor 100%
