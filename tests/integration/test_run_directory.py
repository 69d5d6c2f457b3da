"""The run directory is the interface: a summary is a pure function of the files a run wrote.

The bug these tests name: the pipeline added ``stopped_by``, ``notes``, ``turns_resumed``,
``cache`` and ``elapsed_s`` after ``summarize()`` returned, and ``summarize()`` read the old
``summary.json`` back for ``length_cap``; so ``lhe-summarize DIR`` on a budget-stopped run
dropped them and turned ``status: stopped`` into ``incomplete``.
"""

import asyncio
import json
import os
import signal

import pytest

import harness.pipeline as pipeline
from harness.analysis.run_summary import SUMMARY_FILE, RunSummary
from harness.cli import compose_config
from harness.commands import summarize_main
from harness.records.manifest import read_manifest
from harness.records.sessions import read_sessions
from harness.run.runner import Runner
from providers.simulated import SimulatedConfig, SimulatedProvider

SMALL = [
    "model=simulated",
    "model.p=0.9",
    "task.samples=6",
    "task.turns=8",
    "run.progress=false",
    "run.concurrency=2",
    "metrics.bootstrap=50",
    "model.price={input:1,output:2}",
]


@pytest.fixture(autouse=True)
def _no_report(monkeypatch):
    monkeypatch.setattr(pipeline, "write_run_report", lambda run_dir: run_dir / "report.html")
    # A budget below the pre-run estimate is refused before the start; these tests want the
    # run-time stop, so the refusal is switched off.
    monkeypatch.setattr(pipeline, "check_budget", lambda *args: None)


def rebuilt(run_dir):
    """What ``lhe-summarize DIR`` writes, next to what the run itself wrote."""
    written = (run_dir / SUMMARY_FILE).read_text()
    (run_dir / SUMMARY_FILE).unlink()  # the rebuild must not read the old summary
    summarize_main([str(run_dir)])
    return json.loads(written), json.loads((run_dir / SUMMARY_FILE).read_text())


async def test_a_complete_run_is_rebuilt_exactly(tmp_path):
    summary = await pipeline.execute(compose_config(SMALL), tmp_path)
    assert isinstance(summary, RunSummary) and summary.status == "complete"
    original, again = rebuilt(tmp_path)
    assert again == original
    assert original["sessions"] == 1 and original["elapsed_s"] > 0


async def test_a_budget_stopped_run_keeps_its_status_and_reason(tmp_path):
    config = compose_config([*SMALL, "budget.max_tokens=3000"])
    summary = await pipeline.execute(config, tmp_path)
    assert summary.status == "stopped" and summary.stopped_by == "budget.max_tokens"
    assert summary.turns_unfinished > 0
    original, again = rebuilt(tmp_path)
    assert again == original
    assert again["status"] == "stopped" and again["stopped_by"] == "budget.max_tokens"


async def test_an_interrupted_run_keeps_its_status(tmp_path, monkeypatch):
    """The provider sends SIGINT to this process on its fifth request and waits until the
    pipeline's handler has stopped the runner (an event, not a sleep): the run ends
    interrupted with turns left."""
    calls = 0
    stopped = asyncio.Event()
    original_stop = Runner.stop

    def stop(self, reason):
        original_stop(self, reason)
        stopped.set()

    monkeypatch.setattr(Runner, "stop", stop)

    class Interrupting(SimulatedProvider):
        async def chat(self, messages, sampling):
            nonlocal calls
            calls += 1
            if calls == 5:
                os.kill(os.getpid(), signal.SIGINT)
                await asyncio.wait_for(stopped.wait(), timeout=30)
            return await super().chat(messages, sampling)

    async def make_provider(_config):
        return Interrupting(SimulatedConfig(p=0.9))

    monkeypatch.setattr(pipeline, "make_provider", make_provider)
    summary = await pipeline.execute(compose_config(SMALL), tmp_path)
    assert summary.status == "interrupted" and summary.turns_unfinished > 0
    assert "resume with: lhe resume=" in summary.note
    original, again = rebuilt(tmp_path)
    assert again == original


async def test_a_resumed_run_counts_both_sessions_and_its_earlier_spending(tmp_path):
    await pipeline.execute(compose_config([*SMALL, "budget.max_tokens=3000"]), tmp_path)
    summary = await pipeline.execute(compose_config(SMALL), tmp_path)  # budget raised
    assert summary.status == "complete" and summary.turns_resumed > 0
    sessions = read_sessions(tmp_path)
    assert [s.outcome for s in sessions] == ["stopped", None]
    assert summary.sessions == 2
    assert summary.elapsed_s == pytest.approx(round(sum(s.elapsed_s for s in sessions), 3))
    original, again = rebuilt(tmp_path)
    assert again == original


async def test_the_one_price_is_in_the_manifest_and_in_the_economics(tmp_path):
    summary = await pipeline.execute(compose_config(SMALL), tmp_path)
    price = read_manifest(tmp_path).price
    assert price is not None and (price.input, price.output) == (1.0, 2.0)
    assert summary.economics.price == price
    spent = summary.tokens_spent
    expected = (spent.prompt_tokens * 1.0 + spent.completion_tokens * 2.0) / 1e6
    assert summary.economics.cost_usd == pytest.approx(expected)
