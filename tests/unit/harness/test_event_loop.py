import asyncio
import gc
import signal
import sys

import pytest

from harness.event_loop import YOUNG_GC_THRESHOLD, loop_name, run_async


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_runs_on_uvloop_when_it_is_installed():
    pytest.importorskip("uvloop")
    assert loop_name() == "uvloop"
    assert run_async(_loop_module()).startswith("uvloop")


def test_falls_back_to_asyncio_when_uvloop_cannot_be_imported(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` raise ImportError
    assert loop_name() == "asyncio"
    assert run_async(_loop_module()).startswith("asyncio")


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_signal_handlers_and_threads_work_on_either_loop(loop):
    if loop == "uvloop":
        pytest.importorskip("uvloop")

    async def main() -> tuple[str, str]:
        # What the pipeline needs of a loop: a signal handler that runs in the loop, and a
        # worker thread (the in-process model) whose result comes back to it.
        got = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, got.set_result, "signal")
        signal.raise_signal(signal.SIGUSR1)
        return await got, await asyncio.to_thread(lambda: "thread")

    assert run_async(main(), loop=loop) == ("signal", "thread")


@pytest.fixture
def cpython_gc_thresholds():
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # CPython's defaults, whatever ran before
    yield
    gc.set_threshold(*saved)


def test_young_generation_is_collected_less_often_while_the_loop_runs(cpython_gc_thresholds):
    async def thresholds() -> tuple[int, ...]:
        return gc.get_threshold()

    assert run_async(thresholds()) == (YOUNG_GC_THRESHOLD, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)
