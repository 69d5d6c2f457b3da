"""A worker's signals: held while it starts up, applied to its runner, harmless after it.

Each case runs in a fresh interpreter, since a signal whose default action applies would
end the test process itself (and the handlers a worker installs would outlive the test).
"""

import json
import subprocess
import sys

import pytest

CHILD = """
import asyncio, json, os, sys
from harness.economics.budget import Budget
from harness.run.runner import RunProgress
from harness.run.workers import ABORT_SIGNAL, STOP_SIGNAL, SharedCounts, WorkerChannel

class Recorder:
    '''The two calls a channel makes on a runner, recorded.'''

    def __init__(self, last):
        self.calls, self.last = [], last
        self.seen_last = asyncio.Event()
        self.progress, self.budget = RunProgress(episodes_total=1), Budget()

    def stop(self, reason):
        self.record(["stop", reason])

    def abort(self):
        self.record(["abort"])

    def record(self, call):
        self.calls.append(call)
        if call[0] == self.last:
            self.seen_last.set()

early, last = sys.argv[1].split(","), sys.argv[2]
channel = WorkerChannel(0, 1, SharedCounts())
channel.listen()
for name in early:  # during start-up: there is no runner yet
    os.kill(os.getpid(), {"stop": STOP_SIGNAL, "abort": ABORT_SIGNAL}[name])

async def main():
    runner = Recorder(last)
    with channel.attached(runner):
        await runner.seen_last.wait()
    for sig in (STOP_SIGNAL, ABORT_SIGNAL):  # after the runner is done
        os.kill(os.getpid(), sig)
    return runner.calls

print(json.dumps(asyncio.run(main())))
"""


@pytest.mark.parametrize(
    ("early", "last", "calls"),
    [
        ("stop", "stop", [["stop", "signal SIGTERM"]]),
        ("abort", "abort", [["stop", "signal SIGUSR1"], ["abort"]]),
    ],
    ids=["stop", "abort"],
)
def test_a_signal_during_start_up_waits_for_the_runner_and_one_after_it_is_ignored(
    early, last, calls
):
    """The worker lives through both (the default action would end it), and the runner gets
    the early one once it exists: an abort also stops, so no episode starts afterwards."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, early, last], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == calls
    verb = "finishing" if early == "stop" else "dropping"
    assert done.stderr == f"lhe: worker 0: {verb} its turns in flight\n"
