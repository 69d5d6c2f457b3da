"""The columnar reader must give exactly what the pydantic path gives, on messy runs too."""

import dataclasses
from collections import Counter

import numpy as np
import pytest

from harness.analysis.metrics import score_matrices
from harness.analysis.summary import _turns_not_needed
from harness.records import table as record_table
from harness.records.schema import TURNS_FILE, latest_records, read_records
from harness.records.table import RecordTable, read_table
from harness.run.history import HistoryPolicy
from harness.run.runner import Runner
from providers.base import ChatResult, Message, Sampling, Usage
from tasks.generate import generate_task_set
from tasks.parsing import format_answer
from tasks.prompts import read_dictionary
from testing import oracles
from testing.scripted import ScriptedProvider

EPISODES, TURNS = 8, 9


def script(first_attempt: bool):
    """Replies of every kind, chosen by the request seed; provider errors only on the first run."""

    def reply(messages: list[Message], sampling: Sampling) -> ChatResult:
        dictionary = read_dictionary(messages[0].content)
        users = [m for m in messages if m.role == "user"]
        total = sum(dictionary[w.strip()] for m in users for w in m.content.split(","))
        kind = sampling.seed % 13
        common = dict(
            usage=Usage(prompt_tokens=10 * len(messages), completion_tokens=kind, cached_tokens=1),
            latency_s=0.01 * kind,
            model_id="model-b" if kind == 6 else "model-a",
        )
        if first_attempt and kind in (0, 8):
            return ChatResult(
                outcome="provider_error",
                error="HTTP 503",
                retries=2,
                retry_reasons={"503": 2},
                **common,
            )
        if kind == 1:
            return ChatResult(outcome="context_exceeded", error="too long", **common)
        contents = {2: "no tag at all", 3: "<answer>twelve</answer>", 4: format_answer(total + 3)}
        content = contents.get(kind, format_answer(total))
        if kind == 7:
            common |= dict(retries=1, retry_reasons={"429": 1})
        return ChatResult(content=content, finish_reason="stop", **common)

    return reply


async def make_run(run_dir) -> None:
    """A run with filled turns, provider errors, a context error and a resume."""
    task_set = generate_task_set(samples=EPISODES, turns=TURNS, k=1, seed=3)
    for first_attempt in (True, False):
        runner = Runner(
            task_set=task_set,
            provider=ScriptedProvider(script(first_attempt)),
            sampling=Sampling(),
            policy=HistoryPolicy(),
            run_dir=run_dir,
            concurrency=3,
            first_called_turn=2,
        )
        await runner.run()


def assert_same(a: RecordTable, b: RecordTable) -> None:
    for field in dataclasses.fields(RecordTable):
        left, right = getattr(a, field.name), getattr(b, field.name)
        if isinstance(left, np.ndarray):
            assert left.dtype == right.dtype, field.name
            left, right = left.tolist(), right.tolist()
        assert left == right, field.name


@pytest.fixture
async def run_dir(tmp_path):
    await make_run(tmp_path)
    return tmp_path


async def test_the_run_has_every_kind_of_record(run_dir):
    records = read_records(run_dir)
    statuses = Counter(r.status for r in records)
    for status in ("ok", "no_answer", "bad_format", "context_exceeded", "provider_error", "filled"):
        assert statuses[status] > 0, status
    assert len(latest_records(records)) < len(records)  # resumed turns superseded failures


async def test_fast_path_reads_what_pydantic_reads(run_dir, monkeypatch):
    slow = RecordTable.from_records(read_records(run_dir))

    def no_fallback(_run_dir):
        raise AssertionError("the clean file fell back to pydantic")

    monkeypatch.setattr(record_table, "read_records", no_fallback)
    assert_same(read_table(run_dir), slow)


async def test_summary_quantities_equal_the_record_computations(run_dir):
    records = read_records(run_dir)
    latest = latest_records(records)
    table = read_table(run_dir)
    fast_latest = table.latest()

    expected = oracles.score_matrices(records, episodes=EPISODES, turns=TURNS, k=1)
    scores = score_matrices(fast_latest, episodes=EPISODES, turns=TURNS, k=1)
    for name in ("index_correct", "turn_correct", "task_correct"):
        np.testing.assert_array_equal(getattr(scores, name), getattr(expected, name))

    assert fast_latest.status_counts() == Counter(r.status for r in latest.values())
    paid = [r for r in records if not r.cache_hit and not r.filled]
    total = sum((r.usage for r in paid), Usage())
    spent = table.tokens_spent()
    assert (spent.prompt_tokens, spent.completion_tokens, spent.requests) == (
        total.prompt_tokens,
        total.completion_tokens,
        len(paid),
    )
    replayed = [r for r in records if r.cache_hit and not r.filled]
    assert table.tokens_replayed() == sum(
        r.usage.prompt_tokens + r.usage.completion_tokens for r in replayed
    )
    assert int(table.retries.sum()) == sum(r.retries for r in records)
    reasons = sum((Counter(r.retry_reasons) for r in records), Counter())
    assert reasons  # the summary lists them most common first, ties in order of appearance
    assert table.retry_reason_counts().most_common() == reasons.most_common()
    assert table.reported_model_id() == oracles.reported_model_id(records)
    assert float(np.mean(table.latency_s)) == float(np.mean([r.latency_s for r in records]))
    errors = sum(1 for r in records if r.status == "provider_error")
    assert int(table.is_status("provider_error").sum()) == errors


@pytest.mark.parametrize("after_failure", [False, True])
async def test_turns_not_needed_matches_the_per_record_rule(run_dir, after_failure):
    first_end: dict[int, int] = {}
    for (episode, turn), r in latest_records(read_records(run_dir)).items():
        failed = r.status != "provider_error" and r.answer != r.truth
        if r.status == "context_exceeded" or (after_failure and not r.filled and failed):
            first_end[episode] = min(turn, first_end.get(episode, TURNS))
    expected = sum(TURNS - 1 - turn for turn in first_end.values())
    assert expected > 0
    latest = read_table(run_dir).latest()
    assert _turns_not_needed(latest, TURNS, after_failure) == expected


@pytest.mark.parametrize(
    "tail",
    [
        b'{"episode": 0, "turn": 3, "ke',  # torn last line
        b"{}\n",  # not a record
        b'{"episode":0,"turn":1,"keys":[],"delta":0,"truth":0,"base":0,"status":"odd"}\n',
        b'{"episode":0,"turn":1,"keys":[],"delta":0,"truth":0,"base":0,"status":"ok",'
        b'"answer":"7"}\n',  # pydantic coerces the string, the reader must not differ
        b"\n",
    ],
)
async def test_damaged_files_read_as_pydantic_reads_them(run_dir, tail):
    with (run_dir / TURNS_FILE).open("ab") as handle:
        handle.write(tail)
    assert_same(read_table(run_dir), RecordTable.from_records(read_records(run_dir)))


async def test_a_record_run_into_the_next_line_is_dropped_like_pydantic_drops_it(run_dir):
    path = run_dir / TURNS_FILE
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([*lines[:-2], lines[-2].rstrip(b"\n"), lines[-1]]))
    table = read_table(run_dir)
    assert len(table) == len(lines) - 2
    assert_same(table, RecordTable.from_records(read_records(run_dir)))


def test_a_missing_or_empty_file_is_an_empty_table(tmp_path):
    assert len(read_table(tmp_path)) == 0
    (tmp_path / TURNS_FILE).write_bytes(b"")
    assert len(read_table(tmp_path)) == 0
    assert read_table(tmp_path).reported_model_id() is None
