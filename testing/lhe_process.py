"""Start ``lhe`` as a process of its own without paying its imports every time.

A fresh ``python -m harness.cli`` spends about 2 s of CPU importing (pandas, matplotlib,
Hydra, the pydantic models) before it reads its first override. A test that starts many
short-lived runs (SIGKILL trials, resumes) pays that for every process, which on a 2-core
machine is most of its time. Here multiprocessing's ``forkserver`` imports the command once,
in a server process, and forks every run from it: each run is still a separate process with
its own pid, dies by SIGKILL like any other, and runs ``harness.cli.main`` with its own
``sys.argv``, but starts in milliseconds.

Why the forkserver and not ``fork`` of the test process: the test process has threads (thread
pools, asyncio, fake servers' readers), and forking it can copy a lock some thread held. The
forkserver process only imported modules: no threads, no event loop (``harness.run.workers``
starts its worker processes the same way). What a fork cannot give a run: a hash seed of its
own (``PYTHONHASHSEED``) or environment variables read at import time; tests that need those
start ``python -m harness.cli`` with :mod:`subprocess` instead.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path

PRELOAD = ["harness.cli", "harness.pipeline", "providers.openai_compatible"]
"""What the forkserver imports once (a superset of what ``harness.run.workers`` preloads, so
whichever starts the shared forkserver first, both find their modules imported)."""


def _context() -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def _main(args: list[str], cwd: str, stderr_path: str) -> None:
    """The child: stdout to /dev/null, stderr to a file, then the console script's main."""
    with open(stderr_path, "wb") as stderr, open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), 1)
        os.dup2(stderr.fileno(), 2)
    os.chdir(cwd)
    import harness.cli

    sys.argv = [harness.cli.__file__, *args]  # what ``python -m harness.cli ARGS`` sees
    harness.cli.main()


class LheProcess:
    """One ``lhe ARGS`` run forked from the preloaded server; a small part of ``Popen``'s API."""

    def __init__(self, args: list[str], stderr_path: Path) -> None:
        self.stderr_path = stderr_path
        self._process = _context().Process(
            target=_main, args=(list(args), os.getcwd(), str(stderr_path)), daemon=False
        )
        self._process.start()
        self.pid: int = self._process.pid  # type: ignore[assignment]
        """The run's own process id."""
        self._code: int | None = None

    def poll(self) -> int | None:
        """The exit code (negative: killed by that signal), or None while it runs."""
        if self._code is None:
            self._code = self._process.exitcode
        return self._code

    def kill(self) -> None:
        """SIGKILL, as ``Popen.kill``."""
        if self.poll() is None:
            self._process.kill()

    def wait(self, timeout: float) -> int:
        """Wait for the exit and return its code; TimeoutError if it is still running."""
        if self._code is None:
            self._process.join(timeout)
            if self._process.exitcode is None:
                raise TimeoutError(f"lhe (pid {self.pid}) still running after {timeout} s")
            self._code = self._process.exitcode
            self._process.close()
        return self._code

    def stderr(self) -> str:
        """What the run wrote to stderr so far (none yet if it died before it began)."""
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return f"(no stderr: pid {self.pid} ended with {self.poll()} before it began)"


def run_lhe(args: list[str], stderr_path: Path, timeout: float = 300) -> tuple[int, str]:
    """Run ``lhe ARGS`` to its end in a forked process; return its exit code and stderr.

    A run still going after ``timeout`` seconds is killed and raises TimeoutError.
    """
    process = LheProcess(args, stderr_path)
    try:
        code = process.wait(timeout)
    except TimeoutError:
        process.kill()
        process.wait(timeout=60)
        raise
    return code, process.stderr()
