"""model.batch=api against a fake batch API the tests start (real sockets, real files).

The fake batch server answers each line with the same simulated executor as its chat
endpoint, so an interactive run against that endpoint is the reference: a batch run must
give the same records, whatever the batches went through.
"""

from pathlib import Path
from typing import Any

import pytest

from harness.config import load_config
from harness.pipeline import execute
from harness.records.schema import read_records
from providers.base import FatalProviderError
from providers.batch_state import STATE_DIR, STATE_FILE, BatchState
from testing.fake_batch_server import running_batch_server

EPISODES, TURNS = 6, 5
DETERMINISTIC = ("episode", "turn", "keys", "truth", "base", "answer", "status", "reply")
FAST = {
    "connect_timeout": 5.0,
    "read_timeout": 10.0,
    "max_attempts": 4,
    "backoff_initial": 0.01,
    "backoff_max": 0.05,
    "backoff_jitter": 0.0,
}


def config(base_url: str, *, batch: str = "api", model: dict | None = None, **sections: Any):
    raw: dict[str, Any] = {
        "model": {
            "provider": "openai_compatible",
            "name": "fake-model",
            "base_url": base_url,
            "max_tokens": 16,
            "batch": batch,
            "batch_options": {"poll_initial_s": 0.01, "poll_max_s": 0.02},
            **FAST,
            **(model or {}),
        },
        "task": {"samples": EPISODES, "turns": TURNS, "k": 2, "seed": 3},
        "run": {"concurrency": 2, "seed": 1, "progress": False},
        "metrics": {"bootstrap": 0},
        "cache": {"enabled": "off"},
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return load_config(raw)


def rows(run_dir: Path) -> list[tuple]:
    return sorted(tuple(getattr(r, f) for f in DETERMINISTIC) for r in read_records(run_dir))


def state(run_dir: Path) -> BatchState:
    return BatchState.model_validate_json((run_dir / STATE_DIR / STATE_FILE).read_bytes())


async def reference(base_url: str, tmp_path: Path, **sections: Any) -> list[tuple]:
    run_dir = tmp_path / "interactive"
    await execute(config(base_url, batch="off", **sections), run_dir)
    return rows(run_dir)


async def test_one_batch_per_turn_gives_the_records_of_an_interactive_run(tmp_path):
    with running_batch_server(p=0.8) as server:
        expected = await reference(server.base_url, tmp_path)
        summary = await execute(config(server.base_url), tmp_path / "batch")
        stats = server.stats()
    assert rows(tmp_path / "batch") == expected
    assert len(expected) == EPISODES * TURNS
    # run.concurrency=2, yet every batch holds turn t of all six episodes.
    assert stats["batches_created"] == stats["files_uploaded"] == TURNS
    assert stats["lines_submitted"] == EPISODES * TURNS
    entries = state(tmp_path / "batch").batches
    assert [sorted(e.lines) for e in entries] == [
        sorted(f"e{e}-t{t}-s0" for e in range(EPISODES)) for t in range(TURNS)
    ]
    assert summary.batch.batches == TURNS and summary.batch.unfinished == []
    assert summary.status == "complete"


async def test_a_target_turn_experiment_is_a_single_batch(tmp_path):
    history = {"source": "injected", "rate": 0.5, "target_turn": TURNS}
    with running_batch_server(p=0.8) as server:
        expected = await reference(server.base_url, tmp_path, history=history)
        await execute(config(server.base_url, history=history), tmp_path / "batch")
        stats = server.stats()
    assert rows(tmp_path / "batch") == expected
    assert stats["batches_created"] == 1 and stats["lines_submitted"] == EPISODES


async def test_failed_lines_go_into_the_next_batch_and_are_counted(tmp_path):
    with running_batch_server(p=0.8, line_error_rate=0.3, seed=5) as server:
        expected = await reference(server.base_url, tmp_path)
        summary = await execute(config(server.base_url), tmp_path / "batch")
        stats = server.stats()
    records = read_records(tmp_path / "batch")
    assert rows(tmp_path / "batch") == expected
    resent = sum(r.retries for r in records)
    assert resent == stats["line_errors"] > 0
    assert stats["lines_submitted"] == EPISODES * TURNS + resent
    assert summary.retries_by_reason == {"500": resent}
    # A resent line rides with the next turn of the other episodes.
    assert stats["batches_created"] < TURNS + resent


@pytest.mark.parametrize(
    ("option", "reason"),
    [("expire_batches", "batch_expired"), ("cancel_batches", "batch_cancelled")],
)
async def test_an_expired_or_cancelled_batch_is_resent_for_what_it_did_not_finish(
    tmp_path, option, reason
):
    with running_batch_server(p=0.8, **{option: "1"}) as server:
        expected = await reference(server.base_url, tmp_path)
        summary = await execute(config(server.base_url), tmp_path / "batch")
        stats = server.stats()
    assert rows(tmp_path / "batch") == expected
    unfinished = EPISODES - EPISODES // 2  # the fake answers the first half
    assert summary.retries_by_reason == {reason: unfinished}
    assert stats["lines_submitted"] == EPISODES * TURNS + unfinished
    assert stats["statuses"]["batch_1"] == reason.removeprefix("batch_")


async def test_a_failed_batch_stops_the_run_at_once(tmp_path):
    with running_batch_server(p=0.8, fail_batches="0") as server:
        summary = await execute(config(server.base_url), tmp_path / "batch")
        stats = server.stats()
    assert summary.status == "failed"
    assert "batch_0 failed (invalid_request: injected failure)" in summary.note
    assert stats["batches_created"] == 1
    assert read_records(tmp_path / "batch") == []


async def test_an_unknown_model_stops_the_run_after_one_batch(tmp_path):
    with running_batch_server(p=0.8) as server:
        summary = await execute(
            config(server.base_url, model={"name": "no-such-model"}), tmp_path / "batch"
        )
        stats = server.stats()
    assert summary.status == "failed"
    assert "model: batch line e" in summary.note and "HTTP 404" in summary.note
    assert stats["batches_created"] == 1 and stats["requests"] == 0
    assert read_records(tmp_path / "batch") == []


async def test_a_bad_key_fails_before_anything_is_uploaded(tmp_path, monkeypatch):
    monkeypatch.setenv("BATCH_TEST_KEY", "wrong")
    with running_batch_server(env={"SERVER_KEY": "right"}, api_key_env="SERVER_KEY") as server:
        with pytest.raises(FatalProviderError, match=r"^model\.api_key_env: "):
            await execute(
                config(server.base_url, model={"api_key_env": "BATCH_TEST_KEY"}),
                tmp_path / "batch",
            )
        stats = server.stats()
    assert stats["files_uploaded"] == 0 and stats["batches_created"] == 0


async def test_context_errors_are_results_and_never_resent(tmp_path):
    with running_batch_server(p=1.0, max_context_chars=2100) as server:
        expected = await reference(server.base_url, tmp_path)
        await execute(config(server.base_url), tmp_path / "batch")
        stats = server.stats()
    got = rows(tmp_path / "batch")
    assert got == expected
    assert any(row[DETERMINISTIC.index("status")] == "context_exceeded" for row in got)
    assert stats["lines_submitted"] == len(got)  # each asked turn sent exactly once


async def test_a_large_output_file_is_read_whole(tmp_path):
    episodes = 40
    with running_batch_server(p=1.0, pad_output_kb=500) as server:
        summary = await execute(
            config(server.base_url, task={"samples": episodes, "turns": 1}), tmp_path / "batch"
        )
    output = tmp_path / "batch" / STATE_DIR / "b0001.output.jsonl"
    assert output.stat().st_size > episodes * 500_000  # about 20 MB
    assert len(output.read_text().splitlines()) == episodes
    assert summary.status == "complete" and summary.index_accuracy == [1.0]


async def test_the_summary_and_estimate_show_the_batch_price(tmp_path, capsys):
    price = {"input": 2.0, "output": 8.0, "batch_multiplier": 0.5}
    with running_batch_server(p=1.0) as server:
        interactive = await execute(
            config(server.base_url, batch="off", model={"price": price}), tmp_path / "i"
        )
        batch = await execute(config(server.base_url, model={"price": price}), tmp_path / "b")
    usage = batch.tokens_spent
    by_hand = (usage.prompt_tokens * 2.0 + usage.completion_tokens * 8.0) / 1e6 * 0.5
    assert batch.economics.cost_usd == pytest.approx(by_hand)
    assert batch.economics.cost_usd == pytest.approx(interactive.economics.cost_usd * 0.5)
    assert batch.economics.price.batch_multiplier == 0.5
    assert interactive.economics.price.batch_multiplier is None
    capsys.readouterr()
    estimate = await execute(
        config("http://127.0.0.1:9/v1", model={"price": price}).model_copy(
            update={"estimate": True}
        ),
        tmp_path / "e",
    )
    listed = await execute(
        config("http://127.0.0.1:9/v1", batch="off", model={"price": price}).model_copy(
            update={"estimate": True}
        ),
        tmp_path / "e2",
    )
    assert estimate.cost_usd == pytest.approx(listed.cost_usd / 2)
    assert "batch price, 0.5 x the list price" in capsys.readouterr().out
