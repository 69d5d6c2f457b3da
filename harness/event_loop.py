"""The one way this package starts an event loop: uvloop where it is installed, else asyncio's.

uvloop's loop is libuv's, written in C. Against the fake server it cuts the client CPU of an
HTTP request by about a fifth (``bench/bench_overhead.py --loop asyncio uvloop`` prints both
side by side), and the server's own CPU likewise, which matters when both share the cores.
It changes no result: the request seeds, the bodies and the records are the same.

uvloop is a dependency only where it builds (CPython on Linux and macOS, see
``pyproject.toml``); elsewhere, or when it cannot be imported, this falls back to
:func:`asyncio.run`. Both run the coroutine on a fresh loop in the calling thread and close
it after, and both support ``loop.add_signal_handler`` (the runner's Ctrl-C handling) and
``asyncio.to_thread`` (the in-process model's generation thread).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

T = TypeVar("T")

LoopName = Literal["uvloop", "asyncio"]


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
    if (loop or loop_name()) == "asyncio":
        return asyncio.run(main)
    import uvloop

    return uvloop.run(main)
