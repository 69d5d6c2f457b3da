"""Sweeps through a real SLURM controller: ``lhe -m hydra/launcher=slurm`` on a one-node cluster.

``submitit_local`` (tested in test_sweep.py) runs a different code path from ``sbatch``: here
every job is submitted to slurmctld, started by slurmd under ``srun``, requeued by
``scontrol requeue`` and counted by SLURM.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.run.runner import request_seed
from testing.fake_server import FAST_RETRIES, running_fake_server

from .clusters import (  # noqa: F401 (fixtures)
    LHE,
    SLURM_LOCAL,
    SWEEP,
    basic_sweep_fixture,
    lhe,
    projection,
    slurm_fixture,
    sweep_records,
)

pytestmark = pytest.mark.slow


def job_fields(cluster, job_id: str) -> dict[str, str]:
    """``scontrol show job`` as a dict (the controller keeps finished jobs for MinJobAge)."""
    text = cluster.command("scontrol", "show", "job", job_id)
    return dict(re.findall(r"(\w+)=(\S*)", text))


def slurm_job_ids(sweep_dir: Path) -> list[str]:
    """The SLURM ids of a sweep's jobs, from the folders submitit names after them."""
    return sorted(p.parent.name for p in sweep_dir.glob(".submitit/*/*_result.pkl"))


def test_a_slurm_sweep_runs_one_job_per_config_with_the_basic_launchers_records(
    slurm, basic_sweep, tmp_path
):
    lhe("-m", *SLURM_LOCAL, *SWEEP, f"hydra.sweep.dir={tmp_path}", env=slurm.env)

    assert sweep_records(tmp_path) == sweep_records(basic_sweep)
    assert len(sweep_records(tmp_path)) == 2
    table = pd.read_csv(tmp_path / "report" / "sweep.csv")
    assert sorted(table["k"]) == [1, 3] and set(table["status"]) == {"complete"}
    # Two SLURM jobs (an array of two tasks), both run to completion by the controller.
    jobs = slurm_job_ids(tmp_path)
    assert len(jobs) == 2
    array_ids = {job.split("_")[0] for job in jobs}
    assert len(array_ids) == 1
    states = [job_fields(slurm, job)["JobState"] for job in jobs]
    assert states == ["COMPLETED", "COMPLETED"]


SERVER = {"p": 0.9, "latency_median": 0.1, "rate_503": 0.05}
EPISODES, TURNS = 4, 15
TASK = [
    "model=openai_compatible",
    "model.name=fake-model",
    *(f"model.{key}={value}" for key, value in FAST_RETRIES.items()),
    f"task.samples={EPISODES}",
    f"task.turns={TURNS}",
    "task.k=2",
    "run.concurrency=2",
    "run.progress=false",
    "metrics.bootstrap=0",
    "cache.enabled=off",
]
SEED_TO_TURN = {request_seed(0, e, t): (e, t) for e in range(EPISODES) for t in range(TURNS)}


def requests(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def lines_on_disk(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def wait_for(condition, what: str, process: subprocess.Popen, log: Path, timeout=120) -> None:
    """Poll ``condition`` until it holds; fail early if ``process`` (the sweep) exits."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the sweep ended before {what}: {log.read_text()[-3000:]}")
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)


def test_a_requeued_job_continues_from_its_turns_and_asks_no_finished_turn_again(slurm, tmp_path):
    from submitit.slurm.slurm import SlurmJobEnvironment

    with running_fake_server(**SERVER) as server:
        reference = tmp_path / "reference"
        lhe("-m", *TASK, f"model.base_url={server.base_url}", f"hydra.sweep.dir={reference}")

    log, sweep_dir = tmp_path / "requests.jsonl", tmp_path / "sweep"
    with running_fake_server(log_requests=str(log), **SERVER) as server:
        command = [
            *LHE,
            "-m",
            *SLURM_LOCAL,
            *TASK,
            f"model.base_url={server.base_url}",
            f"hydra.sweep.dir={sweep_dir}",
        ]
        driver_log = tmp_path / "driver.log"  # a file, so a chatty driver never blocks
        with open(driver_log, "wb") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **slurm.env}
            )
        try:
            turns = sweep_dir / "0_fake-model" / "turns.jsonl"
            wait_for(lambda: lines_on_disk(turns) >= 10, "10 turns", process, driver_log)
            (job,) = slurm.jobs()
            # The signal submitit's handler listens to; it checkpoints, requeues, exits.
            slurm.command("scancel", f"--signal={SlurmJobEnvironment.USR_SIG}", job)
            requeued = lambda: job_fields(slurm, job).get("Restarts") == "1"  # noqa: E731
            wait_for(requeued, "a requeue", process, driver_log)
            # What was on disk when the first run died, then how far the server's log had
            # got: any later request for one of these turns would be a turn asked twice.
            finished = {
                (r["episode"], r["turn"])
                for r in map(json.loads, turns.read_text().splitlines())
                if r["status"] != "provider_error"
            }
            seen = len(requests(log))
            process.wait(timeout=300)
            assert process.returncode == 0, driver_log.read_text()[-3000:]
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    assert 10 <= len(finished) < EPISODES * TURNS
    asked_again = [SEED_TO_TURN[r["seed"]] for r in requests(log)[seen:]]
    assert asked_again, "the requeued job asked the server nothing"
    assert not finished & set(asked_again), "a finished turn was requested again"
    run_dir = turns.parent
    assert projection(run_dir) == projection(reference / "0_fake-model")
    assert len(projection(run_dir)) == EPISODES * TURNS
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "complete"
    assert summary["turns_resumed"] >= len(finished)
    assert job_fields(slurm, job)["JobState"] == "COMPLETED"


LATENCY_S, CONCURRENCY, SAMPLES, TURNS_EACH = 0.1, 2, 6, 40
LIMIT = 180_000
"""Above one job's expected 151k tokens (a job whose own estimate exceeds the sweep's budget
is refused before it starts), below the two jobs' 302k together."""
LEDGER_LAG_S = 2.0
"""How stale one job's view of another's spending can be: each publishes at most once a
second and reads the others at most once a second (harness/economics/budget.py)."""


def test_the_sweep_budget_holds_across_jobs_running_at_the_same_time(slurm, tmp_path):
    if (os.cpu_count() or 1) < 2:
        pytest.skip("two jobs at once need two CPUs")
    lhe(
        "-m",
        *SLURM_LOCAL,
        "model=simulated",
        f"model.latency_s={LATENCY_S}",
        "model.p=0.9,0.99",
        f"task.samples={SAMPLES}",
        f"task.turns={TURNS_EACH}",
        f"run.concurrency={CONCURRENCY}",
        "run.progress=false",
        "metrics.bootstrap=0",
        f"budget.sweep_max_tokens={LIMIT}",
        f"hydra.sweep.dir={tmp_path}",
        env=slurm.env,
    )
    # Both jobs really ran at the same time: SLURM's own start and end times overlap.
    times = [job_fields(slurm, job) for job in slurm_job_ids(tmp_path)]
    assert len(times) == 2
    assert max(t["StartTime"] for t in times) < min(t["EndTime"] for t in times)

    summaries = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*/summary.json"))]
    assert "budget.sweep_max_tokens" in {s["stopped_by"] for s in summaries}
    spent, bound = 0, LIMIT
    for turns in sorted(tmp_path.glob("*/turns.jsonl")):
        records = [json.loads(line) for line in turns.read_text().splitlines()]
        usage = [r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"] for r in records]
        assert usage, "a job spent nothing: it did not run beside the other"
        spent += sum(usage)
        # After the sweep's total crosses the limit, a job may go on for as long as its view
        # of the other is stale, plus the requests it already had in flight.
        bound += (LEDGER_LAG_S / LATENCY_S + 1) * CONCURRENCY * max(usage)
    # Had each job counted only itself, both would have run to the end: 302k tokens.
    assert LIMIT <= spent <= bound < 2 * 151_000
