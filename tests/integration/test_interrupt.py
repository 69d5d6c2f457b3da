import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from harness.cli import compose_config
from harness.pipeline import execute
from harness.records.schema import read_records
from harness.run.runner import Runner
from providers.base import ChatResult, Usage
from testing.scripted import ScriptedProvider

ARGS = [
    "model=simulated",
    "model.latency_s=0.05",
    "task.samples=10",
    "task.turns=30",
    "run.concurrency=10",
    "metrics.bootstrap=0",
]


def start(run_dir):
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *ARGS, f"hydra.run.dir={run_dir}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_lines(path, count, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached {count} lines")


def answers(run_dir):
    lines = (run_dir / "turns.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is whole JSON
    return [(r["episode"], r["turn"], r["answer"]) for r in records]


@pytest.mark.parametrize("signals", [[signal.SIGTERM], [signal.SIGINT, signal.SIGINT]])
def test_a_signal_stops_cleanly_and_resume_completes_the_same_run(tmp_path, signals):
    reference = tmp_path / "reference"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            *ARGS,
            "model.latency_s=0",
            f"hydra.run.dir={reference}",
        ],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0

    run_dir = tmp_path / "run"
    process = start(run_dir)
    wait_for_lines(run_dir / "turns.jsonl", 40)
    for sig in signals:
        process.send_signal(sig)
        time.sleep(0.01)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert f"lhe resume={run_dir}" in stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    partial = answers(run_dir)
    assert 40 <= len(partial) < 300

    resumed = subprocess.run(
        [sys.executable, "-m", "harness.cli", f"resume={run_dir}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    final = answers(run_dir)
    assert len(final) == len(set((e, t) for e, t, _ in final)) == 300  # no duplicates, no gaps
    assert sorted(final) == sorted(answers(reference))
    assert final[: len(partial)] == partial  # nothing measured was rewritten


class Gate:
    """Replies only when released; says when ``expected`` requests are in flight at once."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.in_flight = 0
        self.all_in = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, messages, sampling):
        self.in_flight += 1
        if self.in_flight == self.expected:
            self.all_in.set()
        await self.release.wait()
        return ChatResult(content="<answer>0</answer>", usage=Usage(prompt_tokens=1))


@pytest.mark.parametrize(
    ("signals", "recorded"),
    [
        ([signal.SIGTERM], 4),
        ([signal.SIGINT], 4),
        ([signal.SIGINT, signal.SIGINT], 0),
        ([signal.SIGTERM, signal.SIGINT], 0),
    ],
    ids=["sigterm", "sigint", "sigint_twice", "sigterm_then_sigint"],
)
async def test_first_signal_lets_turns_in_flight_finish_and_a_second_drops_them(
    tmp_path, monkeypatch, capsys, signals, recorded
):
    """Four episodes wait inside their first request when the signals arrive (no timing: the
    provider holds every reply until the test releases it, after the last signal was seen)."""
    gate = Gate(expected=4)
    provider = ScriptedProvider(gate)

    async def make_provider(config):
        return provider

    monkeypatch.setattr("harness.pipeline.make_provider", make_provider)
    handled = asyncio.Queue()
    for name in ("stop", "abort"):
        original = getattr(Runner, name)

        def spy(self, *args, _original=original, _name=name):
            _original(self, *args)
            handled.put_nowait(_name)

        monkeypatch.setattr(Runner, name, spy)
    config = compose_config(
        [
            "model=simulated",
            "task.samples=8",
            "task.turns=5",
            "run.concurrency=4",
            "run.progress=false",
            "metrics.bootstrap=0",
            "cache.enabled=off",
        ]
    )
    run = asyncio.create_task(execute(config, tmp_path))
    await gate.all_in.wait()
    for sig in signals:
        os.kill(os.getpid(), sig)
        await asyncio.wait_for(handled.get(), timeout=10)
    gate.release.set()
    summary = await asyncio.wait_for(run, timeout=60)

    records = read_records(tmp_path)
    assert len(records) == recorded
    assert all((r.turn, r.status) == (0, "ok") for r in records)
    assert len(provider.requests) == 4  # no new turn started after the first signal
    assert summary.status == "interrupted"
    assert summary.turns_unfinished == 8 * 5 - recorded
    assert f"resume with: lhe resume={tmp_path}" in capsys.readouterr().err
