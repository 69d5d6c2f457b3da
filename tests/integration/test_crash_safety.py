"""SIGKILL at random moments, then resume: nothing measured is lost, nothing is paid twice;
and at a known moment: every answered turn is on disk.

Each run goes to its own fake server, whose request log names the turn of every chat request
(by its seed) and hashes its conversation. A run is killed several times (each kill is one
trial): at seeded record counts, then once right after a resume started, then resumed until
it completes. The final records must equal an uninterrupted run's, and no turn that was on disk
when a process died may be asked for again afterwards. Every kill costs a fresh ``lhe``
process, hence a few runs with several kills each; each is forked from a server that imported
the command once (``testing.lhe_process``), so a kill costs the run's work, not 2 s of imports.
"""

import itertools
import json
import random
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.records.schema import TURNS_FILE, read_records
from harness.run.runner import request_seed
from testing.fake_server import running_fake_server
from testing.lhe_process import LheProcess

RUNS, PROGRESS_KILLS = 2, 5
EPISODES, TURNS = 6, 10
TASK = [
    f"task.samples={EPISODES}",
    f"task.turns={TURNS}",
    "task.k=2",
    "run.concurrency=3",
    "run.progress=false",
    "metrics.bootstrap=0",
    "cache.enabled=off",
]
SERVER = {"p": 0.8, "latency_median": 0.03}
DETERMINISTIC = ("episode", "turn", "keys", "delta", "truth", "base", "answer", "status", "reply")
SEED_TO_TURN = {request_seed(0, e, t): (e, t) for e in range(EPISODES) for t in range(TURNS)}
TIMEOUT = 120
LAST_ROUNDS = 2 * 3
"""Records a kill point keeps clear of at the end: two rounds of run.concurrency requests."""


def first_command(base_url: str, run_dir: Path) -> list[str]:
    """The arguments of ``lhe`` for the run's first start."""
    return [
        "model=openai_compatible",
        "model.name=fake-model",
        f"model.base_url={base_url}",
        *TASK,
        f"hydra.run.dir={run_dir}",
    ]


_STARTED = itertools.count()


def start(command: list[str], run_dir: Path) -> LheProcess:
    """``lhe COMMAND`` in a process of its own; its stderr goes to a file beside the run."""
    return LheProcess(command, run_dir.parent / f"{run_dir.name}.stderr{next(_STARTED)}")


def lines_on_disk(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def kill(process: LheProcess) -> bool:
    """SIGKILL the process by its pid; True when it was still running."""
    running = process.poll() is None
    if running:
        process.kill()
    return running and process.wait(timeout=TIMEOUT) == -signal.SIGKILL


def finish(process: LheProcess) -> None:
    assert process.wait(timeout=TIMEOUT) == 0, process.stderr()[-2000:]


def request_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def projection(run_dir: Path) -> list[tuple]:
    """The deterministic fields of every line of turns.jsonl, each line whole JSON."""
    text = (run_dir / TURNS_FILE).read_text()
    assert text.endswith("\n")
    records = [json.loads(line) for line in text.splitlines()]
    return sorted(tuple(json.dumps(r[name]) for name in DETERMINISTIC) for r in records)


@dataclass
class Kill:
    """What was on disk when a process died, and how far the server's log had got."""

    finished: set[tuple[int, int]]
    log_length: int


@dataclass
class Trial:
    run_dir: Path
    log: Path
    kills: list[Kill] = field(default_factory=list)


def snapshot(trial: Trial) -> None:
    """Record a kill; the run's JSON files must be whole whenever a process dies."""
    finished = {
        (r.episode, r.turn) for r in read_records(trial.run_dir) if r.status != "provider_error"
    }
    trial.kills.append(Kill(finished, len(request_log(trial.log))))
    for name in ("manifest.json", "summary.json"):
        if (trial.run_dir / name).exists():
            json.loads((trial.run_dir / name).read_text())


def run_and_kill(number: int, tmp_path: Path) -> Trial:
    """One run killed up to ``PROGRESS_KILLS`` times mid-run, then once during start-up.

    Kill points are line counts drawn from a seeded generator (at most halfway through what
    is left, and never within the last rounds of requests), not moments: the process dies as
    soon as it has written that many records. A run that still finishes before its kill
    lands (a stalled poller on a busy machine) is no failure: that kill is simply not a
    trial, and the run is complete.
    """
    rng = random.Random(number)
    trial = Trial(tmp_path / f"run{number}", tmp_path / f"requests{number}.jsonl")
    turns_file = trial.run_dir / TURNS_FILE
    total = EPISODES * TURNS
    with running_fake_server(log_requests=str(trial.log), **SERVER) as server:
        command = first_command(server.base_url, trial.run_dir)
        for _ in range(PROGRESS_KILLS):
            done = lines_on_disk(turns_file)
            room = total - LAST_ROUNDS - done
            if room < 1:
                break
            target = done + max(1, int(room * rng.uniform(0, 0.5)))
            process = start(command, trial.run_dir)
            deadline = time.monotonic() + TIMEOUT
            while process.poll() is None and lines_on_disk(turns_file) < target:
                assert time.monotonic() < deadline, "the run never got going"
                time.sleep(0.002)
            command = [f"resume={trial.run_dir}"]
            if not kill(process):
                break  # finished first: complete, nothing left to kill
            snapshot(trial)
        process = start(command, trial.run_dir)  # killed at once: during start-up or the replay
        if kill(process):
            snapshot(trial)
        finish(start(command, trial.run_dir))
    return trial


def reference_run(tmp_path: Path) -> tuple[list[tuple], set[tuple]]:
    run_dir, log = tmp_path / "reference", tmp_path / "reference_requests.jsonl"
    with running_fake_server(log_requests=str(log), **SERVER) as server:
        finish(start(first_command(server.base_url, run_dir), run_dir))
    requests = {(r["seed"], r["conversation"]) for r in request_log(log)}
    return projection(run_dir), requests


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(tmp_path):
    assert len(SEED_TO_TURN) == EPISODES * TURNS  # every request's seed names one turn
    with ThreadPoolExecutor(max_workers=RUNS + 1) as pool:
        reference_job = pool.submit(reference_run, tmp_path)
        trials = list(pool.map(lambda n: run_and_kill(n, tmp_path), range(RUNS)))
        reference, reference_requests = reference_job.result()
    assert len(reference) == EPISODES * TURNS
    assert {row[DETERMINISTIC.index("status")] for row in reference} == {'"ok"'}

    assert all(trial.kills for trial in trials)  # every run was killed at least once
    for trial in trials:
        # Same content as the uninterrupted run, each turn once, none missing.
        assert projection(trial.run_dir) == reference
        summary = json.loads((trial.run_dir / "summary.json").read_text())
        assert (summary["status"], summary["turns_unfinished"]) == ("complete", 0)

        log = request_log(trial.log)
        # A resumed conversation is byte for byte the one an uninterrupted run sends.
        assert {(r["seed"], r["conversation"]) for r in log} <= reference_requests
        for died in trial.kills:
            asked_again = {SEED_TO_TURN[r["seed"]] for r in log[died.log_length :]}
            assert not asked_again & died.finished, trial.run_dir.name
        # Every turn was asked for; turns lost in flight were asked again, nothing else was.
        asked = [SEED_TO_TURN[r["seed"]] for r in log]
        assert set(asked) == set(SEED_TO_TURN.values())
        in_flight_losses = len(asked) - len(set(asked))
        assert in_flight_losses <= 3 * len(trial.kills)  # run.concurrency per kill at most


def test_a_torn_last_line_loses_no_record_and_leaves_every_line_whole(tmp_path):
    args = [
        "model=simulated",
        "task.samples=3",
        "task.turns=6",
        "run.progress=false",
        "metrics.bootstrap=0",
    ]
    run_dir = tmp_path / "run"
    finish(start([*args, f"hydra.run.dir={run_dir}"], run_dir))
    complete = projection(run_dir)
    lines = (run_dir / TURNS_FILE).read_bytes().splitlines(keepends=True)
    # What SIGKILL in the middle of a write leaves: whole lines, then half of the next.
    (run_dir / TURNS_FILE).write_bytes(b"".join(lines[:7]) + lines[7][: len(lines[7]) // 2])
    finish(start([f"resume={run_dir}"], run_dir))
    assert projection(run_dir) == complete


@pytest.mark.slow
def test_every_answered_turn_is_on_disk_when_the_process_dies(tmp_path):
    """Records are flushed as they are written, not when the writer closes.

    The server answers the first 9 chat requests and holds the rest: with three episodes in
    flight, the run then waits on exactly three held requests, and every one of the 9 answered
    turns was recorded before its episode sent the next request. A SIGKILL at that point must
    find all 9 lines on disk (an unflushed writer leaves none, or a torn one).
    """
    answered, in_flight = 9, 3  # run.concurrency=3
    run_dir, log = tmp_path / "run", tmp_path / "requests.jsonl"
    with running_fake_server(log_requests=str(log), hold_after=answered, **SERVER) as server:
        process = start(first_command(server.base_url, run_dir), run_dir)
        deadline = time.monotonic() + TIMEOUT
        while server.stats()["held"] < in_flight:  # a state of the server, never a duration
            assert process.poll() is None, process.stderr()[-2000:]
            assert time.monotonic() < deadline, "the requests were never held"
            time.sleep(0.01)
        assert kill(process)
        server.release()
    records = [json.loads(line) for line in (run_dir / TURNS_FILE).read_text().splitlines()]
    assert len(records) == answered
    asked = [SEED_TO_TURN[r["seed"]] for r in request_log(log)]
    assert sorted((r["episode"], r["turn"]) for r in records) == sorted(asked[:answered])
