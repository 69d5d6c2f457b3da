"""SIGKILL a batch run while it polls, resume it: the batch already paid for is polled, not resent.

The fake batch server holds batches in progress on request, so each kill lands while the
client is polling (the server has counted its status checks). The server counts uploads,
batch creations and lines, and logs every line it answers with its seed (which names one
turn): in the end each count equals an uninterrupted run's and no turn was answered twice.
One kill is followed by rewinding the state file to "uploaded, no batch id": what a crash
between creating the batch and writing its id down leaves; the resume must find the batch
at the server by its input file.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.records.schema import read_records
from harness.run.runner import request_seed
from providers.batch_state import STATE_DIR, STATE_FILE, BatchState
from testing.fake_batch_server import RunningBatchServer, running_batch_server

EPISODES, TURNS = 5, 4
TIMEOUT = 120
DETERMINISTIC = ("episode", "turn", "keys", "truth", "base", "answer", "status", "reply")
SEED_TO_TURN = {request_seed(0, e, t): (e, t) for e in range(EPISODES) for t in range(TURNS)}


def command(base_url: str, run_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "harness.cli",
        "model=openai_compatible",
        "model.name=fake-model",
        f"model.base_url={base_url}",
        "model.batch=api",
        "model.batch_options.poll_initial_s=0.02",
        "model.batch_options.poll_max_s=0.05",
        f"task.samples={EPISODES}",
        f"task.turns={TURNS}",
        "task.k=2",
        "run.progress=false",
        "metrics.bootstrap=0",
        "cache.enabled=off",
        f"hydra.run.dir={run_dir}",
    ]


def resume(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "harness.cli", f"resume={run_dir}"]


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen) -> None:
    _, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, stderr.decode()[-2000:]


def kill(process: subprocess.Popen) -> None:
    assert process.poll() is None, "the run ended before its kill"
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=TIMEOUT)


def wait_for(condition, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert process.poll() is None, process.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


def polls(server: RunningBatchServer, batch_id: str) -> int:
    return server.stats()["polls"].get(batch_id, 0)


def rows(run_dir: Path) -> list[tuple]:
    return sorted(tuple(getattr(r, f) for f in DETERMINISTIC) for r in read_records(run_dir))


def answered_seeds(log: Path) -> list[int]:
    return [json.loads(line)["seed"] for line in log.read_text().splitlines()]


@pytest.mark.slow
def test_killed_while_polling_then_resumed_pays_nothing_twice(tmp_path):
    reference_dir, run_dir = tmp_path / "reference", tmp_path / "run"
    with running_batch_server(p=0.8, polls=1) as server:
        finish(start(command(server.base_url, reference_dir)))
    expected = rows(reference_dir)
    assert len(expected) == EPISODES * TURNS

    log = tmp_path / "answered.jsonl"
    with running_batch_server(p=0.8, polls=1, log_requests=str(log)) as server:
        server.hold(0)
        process = start(command(server.base_url, run_dir))
        wait_for(lambda: polls(server, "batch_0") >= 2, process)  # in its polling loop
        kill(process)
        assert server.stats()["batches_created"] == 1

        # The resumed run polls batch_0 (the hold keeps it running) and creates nothing.
        checks = polls(server, "batch_0")
        process = start(resume(run_dir))
        wait_for(lambda: polls(server, "batch_0") >= checks + 2, process)
        assert server.stats()["batches_created"] == 1
        server.hold(2)  # let turns 0 and 1 finish; hold turn 2's batch
        wait_for(lambda: polls(server, "batch_2") >= 2, process)
        kill(process)

        # As if the process had died between creating batch_2 and writing its id down.
        path = run_dir / STATE_DIR / STATE_FILE
        rewound = BatchState.model_validate_json(path.read_bytes())
        assert rewound.batches[-1].batch_id == "batch_2"
        rewound.batches[-1].batch_id, rewound.batches[-1].phase = None, "uploaded"
        path.write_text(rewound.model_dump_json())

        server.hold(None)
        finish(start(resume(run_dir)))
        stats = server.stats()

    assert rows(run_dir) == expected
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["status"], summary["turns_unfinished"]) == ("complete", 0)
    # Paid once: one upload and one batch per turn, each line sent and answered once.
    assert stats["files_uploaded"] == stats["batches_created"] == TURNS
    assert stats["lines_submitted"] == EPISODES * TURNS
    seeds = answered_seeds(log)
    assert sorted(seeds) == sorted(SEED_TO_TURN)
