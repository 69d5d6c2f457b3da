import json
import signal
import subprocess
import sys
import time

import pytest

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
