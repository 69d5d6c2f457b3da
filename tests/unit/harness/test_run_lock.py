"""The run directory's lock: held by one process at a time, and freed by its holder's death.

The holder is another interpreter (a lock held in this process would prove nothing about
processes), which says "held" once it has the lock and then waits on its stdin; it is
killed with SIGKILL, the death a lock file written by hand would not survive.
"""

import errno
import os
import subprocess
import sys

import pytest

from harness.records import run_lock
from harness.records.run_lock import LOCK_FILE, RunDirectoryInUse, holding

HOLDER = """
import sys
from pathlib import Path
from harness.records.run_lock import holding
with holding(Path(sys.argv[1]), busy="the holder"):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def holder(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / LOCK_FILE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline() == "held\n"
    yield process
    process.kill()
    process.wait()


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path, holder):
    with pytest.raises(RunDirectoryInUse) as refused, holding(tmp_path / LOCK_FILE, busy="x"):
        pass
    assert str(refused.value) == (
        f"{tmp_path}: x is running here (pid {holder.pid}); wait for it to end or stop it"
    )


def test_the_lock_dies_with_its_holder_and_the_file_stays(tmp_path, holder):
    holder.kill()
    holder.wait()
    assert (tmp_path / LOCK_FILE).exists()
    with holding(tmp_path / LOCK_FILE, busy="x"):
        assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"


def test_a_released_lock_can_be_taken_again_in_the_same_process(tmp_path):
    with (
        holding(tmp_path / LOCK_FILE, busy="x"),
        pytest.raises(RunDirectoryInUse),  # a second open file: refused, even here
        holding(tmp_path / LOCK_FILE, busy="x"),
    ):
        pass
    with holding(tmp_path / LOCK_FILE, busy="x"):
        pass


def test_a_file_system_without_locks_runs_unguarded_and_says_so(tmp_path, monkeypatch, capsys):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(run_lock.fcntl, "flock", no_locks)
    with holding(tmp_path / LOCK_FILE, busy="x"):
        ran = True
    assert ran
    assert capsys.readouterr().err == (
        f"lhe: warning: {tmp_path / LOCK_FILE}: cannot lock ({os.strerror(errno.ENOLCK)}); "
        "a second session in this directory would not be refused\n"
    )
