"""Ctrl-C on ``lhe`` with ``run.workers=2``: the parent forwards it, the records stay whole;
and when the parent dies without forwarding anything, its workers end as after one Ctrl-C.

Each run is an ``lhe`` process against its own fake server, which answers the first
``ANSWERED`` chat requests and then holds every later one until the test releases it. With
``run.concurrency=4`` over two workers that is exactly four requests in flight (two
episodes per worker, each with one request outstanding) when the test sends SIGINT, and
the test waits for each worker to say it got the signal before it releases them: no step
depends on how long anything takes. The server's request log names the turn of every chat
request by its seed, so it shows which requests got a record. A resumed run must end with
the records of an uninterrupted ``run.workers=1`` run.
"""

import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.records.run_lock import LOCK_FILE, RunDirectoryInUse, holding
from harness.records.schema import TURNS_FILE
from harness.records.sessions import SESSIONS_FILE
from harness.run.runner import request_seed
from harness.run.workers import SHARDS_DIR
from testing.fake_server import running_fake_server

EPISODES, TURNS = 8, 6
ANSWERED = 12
"""Chat requests the server answers before it holds the rest."""
IN_FLIGHT = 4
"""Requests outstanding once the server holds: ``run.concurrency``, two per worker."""
TASK = [
    f"task.samples={EPISODES}",
    f"task.turns={TURNS}",
    "task.k=2",
    "task.seed=5",
    f"run.concurrency={IN_FLIGHT}",
    "metrics.bootstrap=0",
    "cache.enabled=off",
]
SERVER = {"p": 0.8, "latency_median": 0.01}
SCORED = ("episode", "turn", "keys", "delta", "truth", "base", "status", "answer", "reply")
SEED_OF = {(e, t): request_seed(0, e, t) for e in range(EPISODES) for t in range(TURNS)}
TIMEOUT = 120
ACK = re.compile(r"lhe: worker (\d+): (finishing|dropping) its turns in flight\n")
"""A worker's acknowledgement; not anchored, as the parent's own note may be written around it."""
ORPHANED = re.compile(
    r"lhe: worker (\d+): the parent process is gone; finishing its turns in flight\n"
)

pytestmark = pytest.mark.slow  # lhe processes with two workers each, and their resumes


def lhe(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness.cli", *args]


def command(base_url: str, run_dir: Path, workers: int) -> list[str]:
    return lhe(
        "model=openai_compatible",
        "model.name=fake-model",
        f"model.base_url={base_url}",
        *TASK,
        f"run.workers={workers}",
        f"hydra.run.dir={run_dir}",
    )


def records(run_dir: Path) -> list[dict]:
    """Every line of ``turns.jsonl``, each of which must be whole JSON."""
    text = (run_dir / TURNS_FILE).read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def scored(run_dir: Path) -> list[tuple]:
    return sorted(tuple(json.dumps(r[name]) for name in SCORED) for r in records(run_dir))


def shard_lines(run_dir: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in (run_dir / SHARDS_DIR).glob("*/" + TURNS_FILE))


def asked_seeds(log: Path) -> list[int]:
    return [json.loads(line)["seed"] for line in log.read_text().splitlines()]


def acks(stderr: Path) -> list[tuple[str, str]]:
    """(worker, what) for every worker's acknowledgement of a forwarded signal so far."""
    return ACK.findall(stderr.read_text())


def wait_until(condition, what: str) -> None:
    """Poll ``condition`` (a state of files or of the server, never a duration)."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[tuple]:
    """The records of an uninterrupted single-process run."""
    run_dir = tmp_path_factory.mktemp("reference")
    with running_fake_server(**SERVER) as server:
        done = subprocess.run(
            command(server.base_url, run_dir, workers=1), capture_output=True, timeout=TIMEOUT
        )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert len(records(run_dir)) == EPISODES * TURNS
    return scored(run_dir)


def interrupted(tmp_path: Path, server, signals: int) -> tuple[subprocess.Popen, Path]:
    """Start a two-worker run, wait until four requests are held, send SIGINT ``signals``
    times (each once every worker acknowledged the one before); returns the process."""
    run_dir, stderr = tmp_path / "run", tmp_path / "stderr.txt"
    with stderr.open("w") as err:
        process = subprocess.Popen(
            command(server.base_url, run_dir, workers=2), stdout=subprocess.DEVNULL, stderr=err
        )
    wait_until(lambda: server.stats()["held"] == IN_FLIGHT, "four requests held")
    assert shard_lines(run_dir) == ANSWERED  # every answered turn is on disk, per worker
    for sent in range(1, signals + 1):
        process.send_signal(signal.SIGINT)
        wait_until(lambda n=sent: len(acks(stderr)) == 2 * n, f"both workers got signal {sent}")
    return process, run_dir


def finish_interrupted(process: subprocess.Popen, run_dir: Path) -> None:
    """The interrupted session ends as interrupted, its shards merged."""
    process.wait(timeout=TIMEOUT)
    assert process.returncode == 130
    sessions = [json.loads(line) for line in (run_dir / SESSIONS_FILE).read_text().splitlines()]
    assert [s["outcome"] for s in sessions] == ["interrupted"]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    assert not (run_dir / SHARDS_DIR).exists()


def resume(run_dir: Path) -> None:
    done = subprocess.run(lhe(f"resume={run_dir}"), capture_output=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr.decode()[-2000:]


def test_first_sigint_lets_every_workers_turns_in_flight_finish(tmp_path, reference):
    log = tmp_path / "requests.jsonl"
    with running_fake_server(**SERVER, hold_after=ANSWERED, log_requests=str(log)) as server:
        process, run_dir = interrupted(tmp_path, server, signals=1)
        assert sorted(what for _, what in acks(tmp_path / "stderr.txt")) == ["finishing"] * 2
        server.release()
        finish_interrupted(process, run_dir)

        on_disk = records(run_dir)
        assert len(on_disk) == ANSWERED + IN_FLIGHT  # the held four were finished, none begun
        recorded = sorted(SEED_OF[r["episode"], r["turn"]] for r in on_disk)
        assert sorted(asked_seeds(log)) == recorded  # every request sent got its record

        resume(run_dir)
    assert scored(run_dir) == reference
    assert sorted(asked_seeds(log)) == sorted(SEED_OF.values())  # no turn asked twice


def test_second_sigint_drops_the_turns_in_flight_and_resume_asks_them_again(tmp_path, reference):
    log = tmp_path / "requests.jsonl"
    with running_fake_server(**SERVER, hold_after=ANSWERED, log_requests=str(log)) as server:
        process, run_dir = interrupted(tmp_path, server, signals=2)
        assert Counter(what for _, what in acks(tmp_path / "stderr.txt")) == {
            "finishing": 2,
            "dropping": 2,
        }
        finish_interrupted(process, run_dir)

        on_disk = records(run_dir)
        assert len(on_disk) == ANSWERED
        recorded = {SEED_OF[r["episode"], r["turn"]] for r in on_disk}
        asked = asked_seeds(log)
        dropped = set(asked) - recorded
        assert len(asked) == len(set(asked)) == ANSWERED + IN_FLIGHT
        assert len(dropped) == IN_FLIGHT  # the held requests: no record

        server.release()
        resume(run_dir)
    assert scored(run_dir) == reference
    again = Counter(asked_seeds(log))
    assert {seed for seed, n in again.items() if n == 2} == dropped  # re-asked, and only those
    assert set(again) == set(SEED_OF.values()) and max(again.values()) == 2


def locked(path: Path) -> bool:
    """True while some process holds the lock file ``path``."""
    try:
        with holding(path, busy="-"):
            return False
    except RunDirectoryInUse:
        return True


def test_workers_of_a_killed_parent_finish_their_turns_in_flight_and_exit(tmp_path, reference):
    log, stderr = tmp_path / "requests.jsonl", tmp_path / "stderr.txt"
    run_dir = tmp_path / "run"
    with running_fake_server(**SERVER, hold_after=ANSWERED, log_requests=str(log)) as server:
        with stderr.open("w") as err:  # the workers write here too, after the parent is gone
            parent = subprocess.Popen(
                command(server.base_url, run_dir, workers=2), stdout=subprocess.DEVNULL, stderr=err
            )
        wait_until(lambda: server.stats()["held"] == IN_FLIGHT, "four requests held")
        locks = [run_dir / SHARDS_DIR / str(i) / LOCK_FILE for i in range(2)]
        pids = [int(lock.read_text()) for lock in locks]
        parent.kill()  # SIGKILL: nothing is forwarded
        parent.wait(timeout=TIMEOUT)
        wait_until(lambda: len(ORPHANED.findall(stderr.read_text())) == 2, "both workers noticed")

        # While they finish, the next session refuses the directory, naming worker 0.
        done = subprocess.run(lhe(f"resume={run_dir}"), capture_output=True, timeout=TIMEOUT)
        assert done.returncode == 2
        shard = run_dir / SHARDS_DIR / "0"
        assert (
            done.stderr.decode()
            .strip()
            .splitlines()[-1]
            .endswith(
                f"{shard}: worker 0 of an earlier session is running here (pid {pids[0]}); "
                "wait for it to end or stop it"
            )
        )

        server.release()
        wait_until(lambda: not any(locked(lock) for lock in locks), "both workers exited")
        assert shard_lines(run_dir) == ANSWERED + IN_FLIGHT  # the held four finished, none begun
        assert len(asked_seeds(log)) == ANSWERED + IN_FLIGHT

        resume(run_dir)
    assert scored(run_dir) == reference
    assert sorted(asked_seeds(log)) == sorted(SEED_OF.values())  # no turn asked twice
