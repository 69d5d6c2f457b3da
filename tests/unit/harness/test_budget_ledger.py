"""The sweep ledger's throttle and overshoot, on a clock the test moves (no sleeps).

The ledger reads ``time.monotonic`` through its module; the tests replace that module's
``time`` with a clock they advance by hand, in this process and in the job processes.
"""

import multiprocessing

import pytest

from harness.config import BudgetConfig
from harness.economics import budget as budget_module
from harness.economics.budget import LEDGER_SECONDS, Budget, SweepLedger
from harness.files import read_json
from harness.records.schema import TurnRecord
from providers.base import Usage

BASE = dict(episode=0, turn=0, keys=["a"], delta=1, truth=1, base=0, status="ok")


def spend(tokens):
    return TurnRecord(**BASE, usage=Usage(prompt_tokens=tokens))


class Clock:
    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(budget_module, "time", clock)
    return clock


def test_a_job_rewrites_its_file_at_most_once_a_second(tmp_path, clock):
    job = Budget(BudgetConfig(sweep_max_tokens=10**6), ledger=SweepLedger(tmp_path, job="a"))
    job.add(spend(100))
    assert read_json(tmp_path / "a.json")["tokens"] == 100
    clock.now += 0.9 * LEDGER_SECONDS
    job.add(spend(100))
    assert read_json(tmp_path / "a.json")["tokens"] == 100  # throttled
    clock.now += 0.1 * LEDGER_SECONDS
    job.add(spend(100))
    assert read_json(tmp_path / "a.json")["tokens"] == 300
    job.add(spend(1))
    job.sync()  # the start and end of a run publish at once
    assert read_json(tmp_path / "a.json")["tokens"] == 301


def test_a_job_sees_the_others_spending_at_most_a_second_late(tmp_path, clock):
    first = Budget(BudgetConfig(sweep_max_tokens=1000), ledger=SweepLedger(tmp_path, job="0_a"))
    second = Budget(BudgetConfig(sweep_max_tokens=1000), ledger=SweepLedger(tmp_path, job="1_b"))
    first.add(spend(600))
    second.add(spend(300))
    assert second.exhausted() is None  # reads 600 + its own 300
    clock.now += 1.5 * LEDGER_SECONDS
    first.add(spend(100))  # published: more than a second since its last write
    clock.now -= 0.6 * LEDGER_SECONDS  # 0.9 s after the second's read
    assert second.exhausted() is None  # still its old reading of the others
    clock.now += 0.1 * LEDGER_SECONDS
    assert second.exhausted() == "budget.sweep_max_tokens"  # 700 + 300
    assert first.exhausted() == "budget.sweep_max_tokens"  # it reads the second's 300 too
    alone = Budget(BudgetConfig(sweep_max_tokens=1000))  # no ledger: this run alone
    assert alone.exhausted() is None


JOBS, STEP_S, TOKENS_PER_STEP, LIMIT, STEPS = 3, 0.25, 100, 3000, 80


class SharedClock:
    def __init__(self, value):
        self.value = value

    def monotonic(self):
        return self.value.value


def job(folder, name, clock_value, barriers, spent):
    """One job: each step it starts a turn of 100 tokens unless the sweep's budget is spent.

    Every job checks the ledger, then every job spends: reads and writes of one step never
    interleave, so the result does not depend on scheduling.
    """
    tick, checked = barriers
    budget_module.time = SharedClock(clock_value)
    budget = Budget(BudgetConfig(sweep_max_tokens=LIMIT), ledger=SweepLedger(folder, job=name))
    budget.sync()
    stopped = False
    for _ in range(STEPS):
        tick.wait()  # the clock moves on; every job sees the same time in the same step
        if not stopped and budget.exhausted():
            stopped = True
        checked.wait()
        if not stopped:
            budget.add(spend(TOKENS_PER_STEP))
    budget.sync()
    spent[name] = budget.spent_tokens


def test_jobs_in_parallel_processes_stop_within_the_documented_overshoot(tmp_path):
    """Three job processes spend 400 tokens per simulated second each. Together they may pass
    the limit by what a job spends in the second it reads late, plus a turn each (README:
    "about one second of spending per job in flight, plus the requests in flight")."""
    context = multiprocessing.get_context("fork")
    clock_value = context.Value("d", 1000.0)

    def tick():
        clock_value.value += STEP_S

    barriers = (context.Barrier(JOBS, action=tick), context.Barrier(JOBS))
    manager = context.Manager()
    spent = manager.dict()
    processes = [
        context.Process(target=job, args=(tmp_path, f"job{i}", clock_value, barriers, spent))
        for i in range(JOBS)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    total = sum(spent.values())
    assert (
        sorted(spent.values()) == [1200] * JOBS
    )  # hand-run: they read 2,800 at 3 s, stop at 3.25 s
    per_second = TOKENS_PER_STEP / STEP_S
    assert LIMIT <= total <= LIMIT + JOBS * (per_second * LEDGER_SECONDS + TOKENS_PER_STEP)
    assert total < JOBS * STEPS * TOKENS_PER_STEP  # they did stop
    published = sum(read_json(tmp_path / f"job{i}.json")["tokens"] for i in range(JOBS))
    assert published == total
