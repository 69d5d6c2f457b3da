"""One session at a time in a run directory, and none while an earlier session's workers run.

Two sessions appending to one ``turns.jsonl`` would ask every turn twice and could interleave
the lines of long records. So a session holds an exclusive ``flock`` on the run directory's
:data:`LOCK_FILE` while it runs, and each worker of ``run.workers`` holds one on its shard's
own :data:`LOCK_FILE`. The kernel releases a lock when its holder exits, however it exits
(SIGKILL included), so a lock file left by a crash never blocks anyone: the file stays, the
lock does not. The holder writes its pid into the file, for the error to name. (On a network
file system a lock can outlive a crashed *machine* until the server's lease on it expires; a
process that ends on a live machine releases it at once.)

``fcntl.flock`` and not a lock library: the standard one is a dozen lines on POSIX and dies
with its process, which is the property this needs; lock libraries add stale-lock timeouts
meant for lock files that outlive their holder.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.config import ConfigError

LOCK_FILE = "run.lock"
"""Held by the session (in the run directory) or by a worker (in its shard's folder)."""


class RunDirectoryInUse(ConfigError):
    """Another process holds the lock.

    A one-line error before any model call, as for a bad config: the fix is the user's (wait,
    stop that process, or pick another directory).
    """


@contextmanager
def holding(path: Path, *, busy: str) -> Iterator[None]:
    """Hold the exclusive lock on ``path`` (created if missing) for the ``with`` block.

    Args:
        path: The lock file.
        busy: What the error says holds the lock, before its pid: "another lhe session".

    Raises:
        RunDirectoryInUse: Some live process holds it.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunDirectoryInUse(
                f"{path.parent}: {busy} is running here (pid {pid}); wait for it to end or stop it"
            ) from None
        except OSError as exc:  # a file system without locks (some FUSE mounts): run unguarded
            sys.stderr.write(
                f"lhe: warning: {path}: cannot lock ({exc.strerror}); "
                "a second session in this directory would not be refused\n"
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays, so no holder races a new file
