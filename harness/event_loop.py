"""The one way this package runs its event loop: uvloop where installed, fewer GC passes.

uvloop's loop is libuv's, written in C: less Python per callback and per socket event, for
the harness and for the test servers, which share the cores with it in benchmarks
(``bench/bench_overhead.py --loop asyncio uvloop`` prints both loops side by side). It
changes no result: the request seeds, the bodies and the records are the same.

uvloop is a dependency only where it builds (CPython on Linux and macOS, see
``pyproject.toml``); elsewhere, or when it cannot be imported, this falls back to
:func:`asyncio.run`. Both run the coroutine on a fresh loop in the calling thread and close
it after, and both support ``loop.add_signal_handler`` (the runner's Ctrl-C handling) and
``asyncio.to_thread`` (the in-process model's generation thread). They differ in one way:
uvloop points ``signal.set_wakeup_fd`` at its own socket while it runs, so code that reads
its own wakeup pipe (a ``run.workers`` worker, :mod:`harness.run.workers`) asks for asyncio's.

While the loop runs, the garbage collector's youngest generation is collected after
:data:`YOUNG_GC_THRESHOLD` net allocations instead of CPython's 700. A hundred requests in
flight keep their objects alive across each collection, so at 700 every pass re-scanned and
promoted them: 16% of the harness's CPU through HTTP (``bench/bench_overhead.py``, measured
with ``gc.callbacks``), against under 3% at 10,000. Memory held by cycles waiting for a pass grows
by at most that many objects. The setting is put back when the loop ends.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, Literal, TypeVar

T = TypeVar("T")

LoopName = Literal["uvloop", "asyncio"]

YOUNG_GC_THRESHOLD = 10_000
"""Net allocations between collections of the youngest generation while a loop runs."""


def loop_name() -> LoopName:
    """Which event loop :func:`run_async` uses in this process."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run_async(main: Coroutine[Any, Any, T], *, loop: LoopName | None = None) -> T:
    """``asyncio.run(main)`` on uvloop when it is installed.

    ``loop`` forces one (benchmarks compare both); ``"uvloop"`` raises ``ImportError`` when
    it is not installed.
    """
    with _fewer_collections():
        if (loop or loop_name()) == "asyncio":
            return asyncio.run(main)
        import uvloop

        return uvloop.run(main)


@contextmanager
def _fewer_collections() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], YOUNG_GC_THRESHOLD), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
