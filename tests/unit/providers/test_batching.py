"""The batching wrapper with an in-process back-end: which lines go into which batch."""

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.config import StopConfig, StrategyConfig
from harness.records.schema import read_records
from harness.run.history import HistoryPolicy
from harness.run.runner import Runner
from providers.base import REQUEST_TAG, FatalProviderError, Message, Provider, Sampling
from providers.batch_state import BatchEntry
from providers.batching import (
    BatchBackend,
    BatchingProvider,
    BatchOptions,
    Line,
    Resend,
    line_result,
)
from providers.simulated import SimulatedConfig, SimulatedProvider
from tasks.generate import generate_task_set

Answer = Callable[[dict[str, Any], int], dict[str, Any] | None]


def chat_body(text: str, n: int = 1) -> dict[str, Any]:
    return {
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ][:n],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }


class InProcessBackend(BatchBackend):
    """Answers every line with the simulated executor, unless ``answer`` says otherwise."""

    kind = "command"

    def __init__(self, p: float = 1.0, answer: Answer | None = None) -> None:
        self.simulated = SimulatedProvider(SimulatedConfig(p=p))
        self.answer = answer
        self.batches: list[list[str]] = []

    async def run(self, entry: BatchEntry, folder: Path, save) -> None:
        lines = [json.loads(x) for x in entry.input_path(folder).read_text().splitlines()]
        self.batches.append([line["custom_id"] for line in lines])
        out = []
        for line in lines:
            scripted = self.answer(line, len(self.batches) - 1) if self.answer else None
            if scripted is None:
                body = line["body"]
                messages = [Message(m["role"], m["content"]) for m in body["messages"]]
                result = await self.simulated.chat(messages, Sampling(seed=body.get("seed")))
                scripted = {"status_code": 200, "body": chat_body(result.content)}
            if scripted.get("skip"):
                continue
            out.append({"custom_id": line["custom_id"], "response": scripted, "error": None})
        entry.output_path(folder).write_text("".join(json.dumps(x) + "\n" for x in out))
        entry.phase, entry.status = "finished", "completed"
        save()


def run(tmp_path, backend, *, samples=5, turns=4, votes=1, stop=None, max_attempts=4):
    provider = BatchingProvider(
        backend,
        name="m",
        label="m",
        run_dir=tmp_path,
        options=BatchOptions(max_attempts=max_attempts),
    )
    task_set = generate_task_set(samples=samples, turns=turns, k=2, seed=1)
    runner = Runner(
        task_set=task_set,
        provider=provider,
        sampling=Sampling(),
        strategy=StrategyConfig(name="majority", n=votes) if votes > 1 else StrategyConfig(),
        policy=HistoryPolicy(),
        run_dir=tmp_path,
        concurrency=samples,
        stop=stop,
    )
    return runner


async def test_each_batch_holds_the_next_turn_of_exactly_the_unfinished_episodes(tmp_path):
    backend = InProcessBackend(p=0.7)
    runner = run(tmp_path, backend, samples=8, turns=6, stop=StopConfig(after_failure=True))
    await runner.run()
    records = read_records(tmp_path)
    # By hand from the records: the episodes that asked turn t, turn by turn.
    asked = [sorted(f"e{r.episode}-t{t}-s0" for r in records if r.turn == t) for t in range(6)]
    asked = [batch for batch in asked if batch]
    assert [sorted(b) for b in backend.batches] == asked
    lengths = {len(batch) for batch in asked}
    assert len(lengths) > 1  # some episodes ended early: the batches really shrank


class Dawdling(Provider):
    """Delegates after ``turns_per_episode x episode`` event-loop turns (an async cache,
    a rate limiter): the episodes' requests of one turn arrive far apart."""

    def __init__(self, inner: BatchingProvider, turns_per_episode: int = 20) -> None:
        self.inner = inner
        self.turns_per_episode = turns_per_episode

    @property
    def label(self) -> str:
        return self.inner.label

    def episode(self, index: int):
        return self.inner.episode(index)

    async def chat(self, messages, sampling):
        episode, _turn = REQUEST_TAG.get()
        for _ in range(self.turns_per_episode * episode):
            await asyncio.sleep(0)
        return await self.inner.chat(messages, sampling)


async def test_a_batch_waits_for_every_open_episode_however_late_it_asks(tmp_path):
    backend = InProcessBackend(p=1.0)
    runner = run(tmp_path, backend, samples=4, turns=3)
    runner.provider = Dawdling(runner.provider)
    await runner.run()
    assert [sorted(b) for b in backend.batches] == [
        sorted(f"e{e}-t{t}-s0" for e in range(4)) for t in range(3)
    ]


async def test_the_samples_of_a_vote_travel_together(tmp_path):
    # Every sample of a majority vote is its own request, all drawn at once: one batch per
    # turn holds every episode's three samples.
    backend = InProcessBackend(p=1.0)
    await run(tmp_path, backend, samples=3, turns=2, votes=3).run()
    assert [sorted(b) for b in backend.batches] == [
        sorted(f"e{e}-t{t}-s{s}" for e in range(3) for s in range(3)) for t in range(2)
    ]
    assert all(r.sample_answers and len(r.sample_answers) == 3 for r in read_records(tmp_path))


async def test_a_line_that_keeps_failing_becomes_a_provider_error_after_max_attempts(tmp_path):
    def always_500_for_e1(line, _batch):
        if line["custom_id"].startswith("e1-"):
            return {"status_code": 503, "body": {"error": {"message": "busy"}}}
        return None

    backend = InProcessBackend(answer=always_500_for_e1)
    await run(tmp_path, backend, samples=3, turns=3, max_attempts=3).run()
    records = read_records(tmp_path)
    failed = [r for r in records if r.episode == 1]
    assert [(r.turn, r.status, r.retries, r.retry_reasons) for r in failed] == [
        (0, "provider_error", 2, {"503": 2})
    ]
    assert "gave up after 3 batches" in failed[0].error
    assert sum(cid.startswith("e1-") for batch in backend.batches for cid in batch) == 3
    assert {(r.episode, r.turn) for r in records if r.status == "ok"} == {
        (e, t) for e in (0, 2) for t in range(3)
    }


async def test_a_fatal_line_stops_the_run_and_no_further_batch_is_sent(tmp_path):
    def unknown_model(line, batch):
        return {"status_code": 404, "body": {"error": {"message": "no model"}}} if batch else None

    backend = InProcessBackend(answer=unknown_model)
    runner = run(tmp_path, backend, samples=3, turns=4)
    progress = await runner.run()
    assert progress.fatal_error.startswith("model: batch line e")
    assert len(backend.batches) == 2
    assert {r.turn for r in read_records(tmp_path)} == {0}


def line(custom_id: str = "e0-t0-s0") -> Line:
    return Line(custom_id, 0, {}, "", 10, asyncio.get_running_loop().create_future())


@pytest.mark.parametrize(
    ("raw", "status", "expected"),
    [
        (None, "expired", Resend("batch_expired", "batch ended expired without this line")),
        (
            {"error": {"code": "batch_cancelled", "message": "gone"}},
            "cancelled",
            Resend("batch_cancelled", "gone"),
        ),
        (
            {"response": {"status_code": 500, "body": {"error": {"message": "x"}}}},
            "completed",
            Resend("500", "HTTP 500: x"),
        ),
        (
            {"response": {"status_code": 429, "body": {"error": "slow"}}},
            "completed",
            Resend("429", "HTTP 429: slow"),
        ),
        (
            {"response": {"status_code": 200, "body": {"choices": []}}},
            "completed",
            Resend("no_choices", "reply has no choices"),
        ),
        ({"response": {}}, "completed", Resend("malformed", "output line has no response status")),
    ],
)
async def test_lines_worth_resending(raw, status, expected):
    assert line_result(raw, line(), status) == expected


async def test_answered_and_context_lines_are_results():
    ok = line_result(
        {"response": {"status_code": 200, "body": chat_body("<answer>4</answer>")}},
        line(),
        "completed",
    )
    assert (ok.outcome, ok.content, ok.usage.prompt_tokens) == ("ok", "<answer>4</answer>", 3)
    too_long = {
        "response": {
            "status_code": 400,
            "body": {"error": {"message": "maximum context length is 8"}},
        }
    }
    result = line_result(too_long, line(), "completed")
    assert result.outcome == "context_exceeded" and "maximum context" in result.error


@pytest.mark.parametrize(
    "raw",
    [
        {"response": {"status_code": 401, "body": {"error": {"message": "bad key"}}}},
        {"response": {"status_code": 404, "body": {"error": {"message": "no such model"}}}},
        {"error": {"code": "invalid_request", "message": "bad body"}},
    ],
)
async def test_lines_that_would_fail_again_are_fatal(raw):
    with pytest.raises(FatalProviderError, match=r"^model(\.api_key_env)?: batch line e0-t0-s0"):
        line_result(raw, line(), "completed")


async def test_an_unexpected_back_end_error_stops_the_run_instead_of_hanging_it(tmp_path):
    class Broken(InProcessBackend):
        async def run(self, entry, folder, save):
            raise OSError("No space left on device")

    runner = run(tmp_path, Broken(), samples=3, turns=2)
    progress = await asyncio.wait_for(runner.run(), timeout=30)
    assert progress.fatal_error == "model.batch: OSError: No space left on device"
    assert read_records(tmp_path) == []
