"""Real clusters on this machine for the tests: a one-node SLURM cluster and a Ray head node.

Imported by ``test_slurm.py`` and ``test_ray.py`` (a module of its own, not a conftest, so
that only the tests that need a cluster see these fixtures). Each fixture function is named
``*_fixture`` and registered under its short name, so importing it does not shadow the
test's argument. Each fixture starts the real daemons,
waits until they answer, yields, and stops them by pid however the test ended; afterwards it
checks that nothing it started is still running and removes its state folder.

Where an engine is not installed the tests skip with the install command, except under CI
(``CI=true``): ``.ci/run`` installs both, so there a missing engine is a broken install step
and fails instead of hiding behind a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from clusters import local_slurm
from clusters.local_slurm import LocalSlurm, free_port
from testing.lhe_process import run_lhe
from testing.requirements import unavailable

LHE = [sys.executable, "-m", "harness.cli"]
SWEEP = [
    "model=simulated",
    "task.samples=6",
    "task.turns=5",
    "task.k=1,3",
    "metrics.bootstrap=50",
    "run.progress=false",
]
"""The sweep every launcher runs in these tests: two jobs of the simulated executor."""
SLURM_LOCAL = [
    "hydra/launcher=slurm",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=10",
]
"""The SLURM preset sized for the one-node test cluster (two jobs at once on two CPUs)."""
DETERMINISTIC = ("episode", "turn", "keys", "delta", "truth", "base", "answer", "status", "reply")
"""Fields of a turn record that do not depend on timing (latency, retries do)."""
RAY_LOOPBACK_ENV = {
    # Ray replaces 127.0.0.1 by the machine's outward address unless told that this is a
    # single-machine cluster; with this it binds and connects on loopback only.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def lhe(*args: str, env: dict[str, str] | None = None, timeout: float = 300):
    """Run ``lhe`` to completion and return the finished process; fail with its stderr."""
    result = subprocess.run(
        [*LHE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def projection(run_dir: Path) -> list[tuple]:
    """The deterministic fields of every line of a run's ``turns.jsonl``, in a stable order."""
    records = [json.loads(line) for line in (run_dir / "turns.jsonl").read_text().splitlines()]
    return sorted(tuple(json.dumps(r[name]) for name in DETERMINISTIC) for r in records)


def sweep_records(sweep_dir: Path) -> dict[str, list[tuple]]:
    """Every job's records by its run-directory name (``0_simulated-p0.95``, ...)."""
    return {p.parent.name: projection(p.parent) for p in sorted(sweep_dir.glob("*/turns.jsonl"))}


@pytest.fixture(scope="session", name="basic_sweep")
def basic_sweep_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:data:`SWEEP` run once by Hydra's basic launcher (one job after another, in process),
    forked from the preloaded server of :mod:`testing.lhe_process`."""
    sweep_dir = tmp_path_factory.mktemp("basic_sweep")
    code, stderr = run_lhe(
        ["-m", *SWEEP, f"hydra.sweep.dir={sweep_dir}"],
        sweep_dir.with_name(f"{sweep_dir.name}.stderr"),
    )
    assert code == 0, stderr[-3000:]
    return sweep_dir


@pytest.fixture(name="slurm")
def slurm_fixture() -> Iterator[LocalSlurm]:
    """A fresh one-node SLURM cluster (munged, slurmctld, slurmd) for one test."""
    if os.geteuid() != 0:
        unavailable("the SLURM tests run as root (slurmd starts the jobs)")
    missing = local_slurm.missing_programs()
    if missing:
        unavailable(f"no {', '.join(missing)}: apt-get install slurm-wlm munge")
    with local_slurm.running() as cluster:
        yield cluster
    alive = [name for name, p in cluster.processes.items() if p.poll() is None]
    assert not alive, f"still running after stop: {alive}"
    assert not local_slurm.stray_processes(cluster.conf), "job processes outlived the cluster"
    assert not cluster.folder.exists()


@dataclass
class RayHead:
    """A Ray head node started by :func:`ray_head_fixture`."""

    address: str
    """``127.0.0.1:PORT`` of its GCS, for ``ray.init(address=...)``."""
    temp_dir: Path
    """Its session folder (logs of every worker, sockets)."""
    env: dict[str, str]
    """What a driver needs in its environment to reach it over loopback."""


def _session_members(session: int) -> list[int]:
    """Pids of the processes in one session (field 6 of ``/proc/<pid>/stat``)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[3]) == session:
            members.append(int(entry.name))
    return members


@pytest.fixture(name="ray_head")
def ray_head_fixture() -> Iterator[RayHead]:
    """``ray start --head --block`` on 127.0.0.1, stopped by its pid at teardown.

    ``--block`` keeps the ``ray start`` process as the parent of the GCS, raylet and agents
    and makes it stop them all on SIGTERM. It runs in a session of its own, so whatever it
    started, workers included, can be found (and, if it outlived the head, killed) by that
    session's id. Every port is a free one and the temp folder is private, so the head runs
    beside other Ray clusters on the machine.
    """
    ray = Path(sys.executable).parent / "ray"
    if not ray.exists():
        unavailable("no ray: pip install -e '.[ray]'")
    temp_dir = Path(tempfile.mkdtemp(prefix="lhe-ray-"))  # short: Unix socket paths live here
    port = free_port()
    env = {**RAY_LOOPBACK_ENV}
    head_env = {
        **os.environ,
        **env,
        "AUTOSCALER_METRIC_PORT": str(free_port()),
        "DASHBOARD_METRIC_PORT": str(free_port()),
    }
    command = [
        str(ray),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        f"--num-cpus={os.cpu_count() or 2}",
        "--include-dashboard=false",
        f"--dashboard-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--ray-client-server-port={free_port()}",
        "--object-store-memory=100000000",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
    ]
    log = temp_dir / "head.out"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=head_env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 120
        while b"Ray runtime started" not in log.read_bytes():
            assert process.poll() is None, f"ray start exited: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no Ray head in 120 s: {log.read_text()[-3000:]}"
            time.sleep(0.2)
        yield RayHead(address=f"127.0.0.1:{port}", temp_dir=temp_dir, env=env)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        leftovers = _session_members(process.pid)
        for pid in leftovers:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert not leftovers, f"processes of the Ray head outlived it: {leftovers}"
