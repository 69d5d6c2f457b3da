"""A fatal error in one worker process stops the others, as it stops a one-process run.

Real worker processes run scripted work (:mod:`testing.shard_work`): worker 0 fails at once,
worker 1 waits until it is stopped, so without the parent passing the stop on, the run
would never end (the test's own deadline fails it).
"""

import asyncio
import os
import signal

from harness.config import load_config
from harness.run.workers import ShardedRunner
from testing.shard_work import SCRIPTED_FATAL_ERROR, worker_zero_fails

DEADLINE = 120


async def test_a_fatal_error_in_one_worker_stops_the_others(tmp_path):
    config = load_config({"model": {"provider": "simulated"}, "run": {"workers": 2}})
    runner = ShardedRunner(config, tmp_path, worker_zero_fails)
    try:
        progress = await asyncio.wait_for(runner.run(), DEADLINE)
    finally:
        for process in runner._processes:  # a failed test must not leave a waiting worker
            if process.exitcode is None and process.pid is not None:
                os.kill(process.pid, signal.SIGKILL)
    assert progress.fatal_error == SCRIPTED_FATAL_ERROR
    assert progress.stopped_by == "signal SIGTERM"  # worker 1's, from the parent
