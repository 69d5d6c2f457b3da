"""A one-node SLURM cluster on this machine, to try ``hydra/launcher=slurm`` and to test it.

Run it from a checkout (as root, with Debian's ``slurm-wlm`` and ``munge`` installed)::

    python -m clusters.local_slurm        # prints `export SLURM_CONF=...`; Ctrl-C stops it

Everything lives in one fresh folder (munge key and socket, ``slurm.conf``, controller state,
spool, logs), nothing under ``/etc`` or ``/var`` is read or written, and the controller and
node daemon use free ports and are addressed as 127.0.0.1 (SLURM has no setting to bind them
to one interface), so it runs beside a real installation and beside another copy of itself.
``sbatch``, ``sinfo`` and friends find it through the ``SLURM_CONF`` variable it prints.

The daemons run in the foreground (``munged -F``, ``slurmctld -D``, ``slurmd -D``) as children
of the process that started them, because containers and CI machines have no init system
to hand them to, and a child stopped by its pid is surely stopped. Jobs run under
``slurmstepd``, which detaches from ``slurmd``; :meth:`LocalSlurm.stop` therefore cancels
every job and waits for the queue to drain before it stops the daemons, and then ends any
job process of this cluster that is still alive (:func:`stray_processes`).

Standard library only, so the test suite and a user's shell can both use it before the
project is installed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "sinfo", "sbatch", "munged", "munge")
"""Programs a local cluster needs (Debian: ``apt-get install slurm-wlm munge``)."""
NODE = "localnode"
"""Name of the one node; its address is 127.0.0.1 whatever the machine is called."""
PARTITION = "local"
REQUEUE_DELAY_S = 5
"""Seconds a requeued job waits before it may start again (SLURM's default: 120)."""


def missing_programs() -> list[str]:
    """The programs of :data:`PACKAGES` that are not on ``PATH`` (or in ``/usr/sbin``)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [name for name in PACKAGES if shutil.which(name, path=path) is None]


def _program(name: str) -> str:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    found = shutil.which(name, path=path)
    if found is None:
        raise FileNotFoundError(f"{name} not found: apt-get install slurm-wlm munge")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def node_hardware() -> str:
    """This host's CPUs, sockets, cores and memory as ``slurm.conf`` node fields.

    ``slurmd -C`` reports what slurmd itself will detect, so the node registers without
    being drained for a mismatch; its host name and uptime are dropped.
    """
    line = subprocess.run(
        [_program("slurmd"), "-C"], capture_output=True, text=True, check=True
    ).stdout.splitlines()[0]
    return " ".join(f for f in line.split() if not f.startswith(("NodeName=", "UpTime=")))


def slurm_conf(folder: Path, *, ctld_port: int, slurmd_port: int, hardware: str) -> str:
    """The ``slurm.conf`` of a one-node cluster whose every file is under ``folder``.

    No accounting database (:mod:`clusters.local_sacct` answers submitit's one ``sacct``
    query from the controller, which keeps finished jobs for ``MinJobAge`` seconds);
    processes tracked through ``/proc`` rather than cgroups, which containers often lack;
    jobs requeueable. ``cred_expire`` is also how long a requeued job waits before it may
    start again (120 s by default, :data:`REQUEUE_DELAY_S` here), and ``sched_interval=1``
    makes the scheduler look at it again within a second once it may.
    """
    host = socket.gethostname().split(".")[0]
    return f"""\
# One-node SLURM cluster written by clusters/local_slurm.py; every path is under {folder}
ClusterName=lhe-local
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={folder}/munge/socket,cred_expire={REQUEUE_DELAY_S}
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/log/slurmctld.log
SlurmdLogFile={folder}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=5
InactiveLimit=0
MinJobAge=3600
NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname={host} {hardware} State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class LocalSlurm:
    """A running one-node cluster; :meth:`stop` ends every process it started."""

    folder: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    remove_folder: bool = True
    """Delete ``folder`` on :meth:`stop` (it holds only what :func:`start` wrote)."""

    @property
    def conf(self) -> Path:
        """The cluster's ``slurm.conf``."""
        return self.folder / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """What a process needs in its environment to talk to this cluster.

        ``SLURM_CONF`` names the cluster; ``PATH`` starts with the folder of the ``sacct``
        stand-in (:mod:`clusters.local_sacct`), since this cluster has no accounting database.
        """
        path = os.environ.get("PATH", "")
        return {"SLURM_CONF": str(self.conf), "PATH": f"{self.folder / 'bin'}{os.pathsep}{path}"}

    def command(self, *args: str, timeout: float = 30) -> str:
        """Run a SLURM client command (``sinfo``, ``squeue``, ...) against this cluster."""
        result = subprocess.run(
            [_program(args[0]), *args[1:]],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode:
            raise RuntimeError(f"{' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def jobs(self) -> list[str]:
        """Ids of the jobs in the queue (pending, running, completing)."""
        return self.command("squeue", "--noheader", "--format=%i").split()

    def stop(self, timeout: float = 30) -> None:
        """Cancel the jobs, stop the daemons by pid, end stray job processes, remove files."""
        try:
            if self._running("slurmctld"):
                with suppress(RuntimeError, subprocess.TimeoutExpired):
                    self._drain(timeout)
        finally:
            for name in ("slurmd", "slurmctld", "munged"):
                if name in self.processes:
                    _terminate(self.processes[name], timeout)
            for pid in stray_processes(self.conf):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if self.remove_folder:
                shutil.rmtree(self.folder, ignore_errors=True)

    def _running(self, name: str) -> bool:
        process = self.processes.get(name)
        return process is not None and process.poll() is None

    def _drain(self, timeout: float) -> None:
        jobs = self.jobs()
        if jobs:
            self.command("scancel", *jobs)
        deadline = time.monotonic() + timeout
        while self.jobs() and time.monotonic() < deadline:
            time.sleep(0.2)


def _terminate(process: subprocess.Popen, timeout: float) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stray_processes(conf: Path) -> list[int]:
    """Pids of this cluster's job processes and job-step daemons that are still alive.

    They carry ``SLURM_CONF=conf`` in their environment and are either a job's own
    processes (``SLURM_JOB_ID`` is set) or a ``slurmstepd``. Matching on this cluster's own
    config path never touches another cluster's jobs, nor a shell or ``lhe`` driver that
    merely talks to this cluster.
    """
    needle = f"SLURM_CONF={conf}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        in_job = any(item.startswith(b"SLURM_JOB_ID=") for item in environ)
        if needle in environ and (in_job or cmdline.startswith(b"slurmstepd")):
            found.append(int(entry.name))
    return found


def _wait_for(
    check: Callable[[], bool],
    what: str,
    processes: dict[str, subprocess.Popen],
    folder: Path,
    timeout: float,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        for name, process in processes.items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with code {process.returncode}: {_log_tail(folder, name)}"
                )
        if check():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout:g} s: {_log_tail(folder, 'slurmd')}")
        time.sleep(0.1)


def _log_tail(folder: Path, name: str) -> str:
    lines: list[str] = []
    for path in (folder / "log" / f"{name}.log", folder / "log" / f"{name}.out"):
        with suppress(OSError):
            lines += path.read_text(errors="replace").splitlines()[-5:]
    return " | ".join(lines) or "(no log)"


def start(folder: Path | None = None, *, timeout: float = 60) -> LocalSlurm:
    """Write the config, start munged, slurmctld and slurmd, return once the node is idle.

    ``folder`` must be short (Unix socket paths are limited to about 100 characters) and
    is created if needed; by default a fresh ``/tmp/lhe-slurm-*`` that :meth:`stop` removes.
    On any failure the processes started so far are stopped before the error is raised.
    """
    remove = folder is None
    folder = Path(tempfile.mkdtemp(prefix="lhe-slurm-")) if folder is None else folder
    for sub in ("munge", "state", "spool", "log"):
        (folder / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    (folder / "bin").mkdir(exist_ok=True)
    sacct = folder / "bin" / "sacct"
    stand_in = Path(__file__).with_name("local_sacct.py")
    sacct.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{stand_in}" "$@"\n')
    sacct.chmod(0o755)
    key = folder / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    cluster = LocalSlurm(folder=folder, remove_folder=remove)
    try:
        cluster.conf.write_text(
            slurm_conf(
                folder, ctld_port=free_port(), slurmd_port=free_port(), hardware=node_hardware()
            )
        )
        munge = folder / "munge"
        _spawn(
            cluster,
            "munged",
            [
                "munged",
                "--foreground",
                "--force",
                f"--key-file={key}",
                f"--socket={munge / 'socket'}",
                f"--pid-file={munge / 'munged.pid'}",
                f"--log-file={folder / 'log' / 'munged.log'}",
                f"--seed-file={munge / 'seed'}",
            ],
        )
        _wait_for(
            lambda: _munge_answers(munge / "socket"),
            "munged did not answer",
            cluster.processes,
            folder,
            timeout,
        )
        _spawn(cluster, "slurmctld", ["slurmctld", "-D", "-c", "-i"])
        _spawn(cluster, "slurmd", ["slurmd", "-D", "-N", NODE])
        _wait_for(
            lambda: _node_state(cluster) == "idle",
            "the node did not become idle",
            cluster.processes,
            folder,
            timeout,
        )
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _spawn(cluster: LocalSlurm, name: str, command: list[str]) -> None:
    out = open(cluster.folder / "log" / f"{name}.out", "wb")  # noqa: SIM115
    with out:
        cluster.processes[name] = subprocess.Popen(
            [_program(command[0]), *command[1:]],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **cluster.env},
            cwd=cluster.folder,
        )


def _munge_answers(socket_path: Path) -> bool:
    if not socket_path.exists():
        return False
    result = subprocess.run(
        [_program("munge"), "--no-input", f"--socket={socket_path}"],
        capture_output=True,
        timeout=10,
    )
    return result.returncode == 0


def _node_state(cluster: LocalSlurm) -> str | None:
    try:
        return cluster.command("sinfo", "--noheader", "--format=%T", timeout=10).strip()
    except (RuntimeError, subprocess.TimeoutExpired):
        return None


@contextmanager
def running(folder: Path | None = None, *, timeout: float = 60) -> Iterator[LocalSlurm]:
    """:func:`start` a cluster for the ``with`` block; stop it however the block ends."""
    cluster = start(folder, timeout=timeout)
    try:
        yield cluster
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> None:
    """Start a cluster, print how to use it, stop it on Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m clusters.local_slurm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dir", type=Path, help="folder for its files (default: a new one in /tmp)"
    )
    args = parser.parse_args(argv)
    missing = missing_programs()
    if missing:
        sys.exit(f"local_slurm: missing {', '.join(missing)}: apt-get install slurm-wlm munge")
    cluster = start(args.dir)
    # Blocked only now: the daemons must not inherit a mask that ignores their SIGTERM.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        print(cluster.command("sinfo"), end="")
        print(f"export SLURM_CONF={cluster.conf} PATH={cluster.folder / 'bin'}:$PATH")
        print("Ctrl-C stops the cluster (cancelling its jobs) and removes its files.", flush=True)
        while all(p.poll() is None for p in cluster.processes.values()):
            if signal.sigtimedwait({signal.SIGINT, signal.SIGTERM}, 1.0) is not None:
                break
        else:
            print("local_slurm: a daemon exited; stopping", file=sys.stderr)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
