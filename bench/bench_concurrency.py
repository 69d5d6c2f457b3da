"""Scheduling efficiency against a fast server with heavy-tailed reply times.

200 episodes x 50 turns through the real pipeline (``compose_config`` + ``execute``, model
``openai_compatible``) at ``run.concurrency=200`` against the fake server on 127.0.0.1,
whose reply times are lognormal with a median of 40 ms and sigma 1.0 (a GPU server answering
short dict-sum turns). At about 1,700 requests a second the client's own CPU is what can
hold a run back, which is what ``run.workers`` is for.

The server draws each reply time from a generator seeded by (seed, request body, attempt),
so a reply's time is a function of the request. The bench recomputes it for every request (the
bytes the adapter sends, the server's own draw) and from that the ideal wall times:

* per-episode scheduling (the harness): the longest episode's sum of reply times;
* lock-step (the paper's code: every turn waits for all episodes): the sum over turns of
  the slowest reply of that turn.

Efficiency = ideal / measured wall time of the runner (``Runner.run``, or with workers
``ShardedRunner.run`` including the workers' start-up; summary and report excluded). Each
row gets a fresh server with the same options, so all send identical requests and wait
identical reply times (checked: every request took at least its reply time).

Rows: the pipeline with ``run.workers`` = 1, 2 and 4 (requests per second per worker
beside each); ``runner, no HTTP`` (an in-process provider that sleeps each request's reply
time: the scheduling alone); with ``--lock-step`` also the paper's schedule.

CPU columns are milliseconds per request of the harness (parent and workers) and of the
server process; the machine has 2 cores, so when their sum exceeds ~2 x wall / requests the
cores are the limit, not the schedule. Other processes share those cores (load shown).

    python bench/bench_concurrency.py
    python bench/bench_concurrency.py --episodes 100 --turns 30 --median 0.1 --lock-step
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import math
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import providers.openai_compatible as adapter
from harness.cli import compose_config
from harness.config import RunConfig
from harness.event_loop import run_async
from harness.pipeline import execute, make_task_set
from harness.records.schema import read_records
from harness.run.conversation import Conversation
from harness.run.history import HistoryPolicy
from harness.run.runner import Runner, request_seed
from harness.run.workers import ShardedRunner
from providers.base import ChatResult, Message, Sampling
from providers.registry import create_provider
from tasks.parsing import parse_reply
from tasks.prompts import system_prompt
from testing.fake_server import FakeServer, ServerOptions, running_fake_server
from testing.scripted import ScriptedProvider

EPISODES, TURNS, CONCURRENCY = 200, 50, 200
MEDIAN = 0.04
SIGMA = 1.0
WORKERS = (1, 2, 4)

Key = tuple[int, int]


def compose(base_url: str, workers: int = 1) -> RunConfig:
    return compose_config(
        [
            "model=openai_compatible",
            "model.name=fake-model",
            f"model.base_url={base_url}",
            f"task.samples={EPISODES}",
            f"task.turns={TURNS}",
            f"run.concurrency={CONCURRENCY}",
            f"run.workers={workers}",
            "run.progress=false",
            "metrics.bootstrap=0",
        ]
    )


def server_options() -> dict[str, float]:
    return {"latency_median": MEDIAN, "latency_sigma": SIGMA}


def reply_time(body: bytes) -> float:
    """The server's latency for the first attempt of ``body``, drawn as the server draws it."""
    _fault, rng = FakeServer(ServerOptions(**server_options()))._draw(body)
    return rng.lognormvariate(math.log(MEDIAN), SIGMA)


def wire_body(config: RunConfig, messages: list[Message], sampling: Sampling) -> bytes:
    """The exact bytes the adapter sends for one request."""
    options = adapter.OpenAICompatibleConfig.model_validate(config.model.provider_options())
    body = adapter.build_request_body(options.name, messages, sampling, send_seed=options.send_seed)
    return adapter.encode_body(body)


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of another process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Outcome:
    """What one schedule did: wall and CPU time, and every request's reply and duration."""

    wall: float = 0.0
    cpu: float = 0.0
    server_cpu: float | None = None
    startup: float = 0.0
    replies: dict[Key, str] = field(default_factory=dict)
    latency: dict[Key, float] = field(default_factory=dict)


@contextlib.contextmanager
def timed_runner(outcome: Outcome) -> Iterator[None]:
    """Record wall and CPU time of the runner: the scheduling, not summary and report."""
    originals = {cls: cls.run for cls in (Runner, ShardedRunner)}

    def timed(cls):  # type: ignore[no-untyped-def]
        async def run(self):  # type: ignore[no-untyped-def]
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return await originals[cls](self)
            finally:
                outcome.wall = time.perf_counter() - wall
                outcome.cpu = time.process_time() - cpu + sum(getattr(self, "worker_cpu", []))
                runs = getattr(self, "worker_run_s", [])
                outcome.startup = outcome.wall - max(runs) if runs else 0.0

        return run

    for cls in originals:
        cls.run = timed(cls)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for cls, original in originals.items():
            cls.run = original  # type: ignore[method-assign]


def run_pipeline(run_dir: Path, workers: int = 1) -> Outcome:
    outcome = Outcome()
    with running_fake_server(**server_options()) as server:
        config = compose(server.base_url, workers)
        cpu = process_cpu(server.pid)
        with timed_runner(outcome), contextlib.redirect_stdout(io.StringIO()):
            summary = run_async(execute(config, run_dir))
        outcome.server_cpu = process_cpu(server.pid) - cpu
    if summary.turns_scored != EPISODES * TURNS:
        raise RuntimeError(f"{run_dir.name}: only {summary.turns_scored} turns scored")
    for record in read_records(run_dir):
        outcome.replies[record.episode, record.turn] = record.reply
        outcome.latency[record.episode, record.turn] = record.latency_s
    return outcome


async def lock_step(config: RunConfig) -> Outcome:
    """Every turn waits for all episodes (``asyncio.gather`` over episodes, turn by turn)."""
    task_set = make_task_set(config)
    provider = create_provider(
        "openai_compatible", config.model.provider_options(), concurrency=CONCURRENCY
    )
    policy = HistoryPolicy(seed=config.run.seed, mode=config.task.mode)
    system = system_prompt(task_set.dictionary, policy.mode, task_set.k)
    conversations = [Conversation(system=system) for _ in range(task_set.samples)]
    base = config.model.sampling(n=config.run.votes)
    outcome = Outcome()
    wall, cpu = time.perf_counter(), time.process_time()
    for turn in range(task_set.turns):
        requests = []
        for episode, conversation in enumerate(conversations):
            seed = request_seed(config.run.seed, episode, turn)
            messages = conversation.ask(task_set.turn_keys(episode, turn))
            requests.append((messages, base.model_copy(update={"seed": seed})))
        results = await asyncio.gather(*(provider.chat(m, s) for m, s in requests))
        for episode, result in enumerate(results):
            truth = int(task_set.turn_truth[episode, turn])
            shown = policy.shown(episode, turn, truth, parse_reply(result.content))
            conversations[episode].answer(shown)
            outcome.replies[episode, turn] = result.content
            outcome.latency[episode, turn] = result.latency_s
    outcome.wall, outcome.cpu = time.perf_counter() - wall, time.process_time() - cpu
    await provider.aclose()
    return outcome


def run_lock_step() -> Outcome:
    with running_fake_server(**server_options()) as server:
        cpu = process_cpu(server.pid)
        outcome = asyncio.run(lock_step(compose(server.base_url)))
        outcome.server_cpu = process_cpu(server.pid) - cpu
    return outcome


def reply_times(config: RunConfig, replies: dict[Key, str]) -> dict[Key, float]:
    """Rebuild every request of the run (after the clock stopped) and recompute its reply time."""
    task_set = make_task_set(config)
    policy = HistoryPolicy(seed=config.run.seed, mode=config.task.mode)
    system = system_prompt(task_set.dictionary, policy.mode, task_set.k)
    base = config.model.sampling(n=config.run.votes)
    times: dict[Key, float] = {}
    for episode in range(task_set.samples):
        conversation = Conversation(system=system)
        for turn in range(task_set.turns):
            seed = request_seed(config.run.seed, episode, turn)
            messages = conversation.ask(task_set.turn_keys(episode, turn))
            sampling = base.model_copy(update={"seed": seed})
            times[episode, turn] = reply_time(wire_body(config, messages, sampling))
            truth = int(task_set.turn_truth[episode, turn])
            parsed = parse_reply(replies[episode, turn])
            conversation.answer(policy.shown(episode, turn, truth, parsed))
    return times


async def replay(config: RunConfig, run_dir: Path, times: dict[Key, float], replies) -> Outcome:
    """The runner with an in-process provider that waits each request's reply time."""
    run_dir.mkdir(parents=True)
    task_set = make_task_set(config)
    by_seed = {
        request_seed(config.run.seed, e, t): (e, t)
        for e in range(task_set.samples)
        for t in range(task_set.turns)
    }

    async def answer(messages: list[Message], sampling: Sampling) -> ChatResult:
        key = by_seed[sampling.seed]
        started = time.monotonic()
        await asyncio.sleep(times[key])
        return ChatResult(content=replies[key], latency_s=time.monotonic() - started)

    runner = Runner(
        task_set=task_set,
        provider=ScriptedProvider(answer),
        sampling=config.model.sampling(n=config.run.votes),
        policy=HistoryPolicy(seed=config.run.seed, mode=config.task.mode),
        run_dir=run_dir,
        concurrency=config.run.concurrency,
        run_seed=config.run.seed,
    )
    outcome = Outcome()
    with timed_runner(outcome):
        await runner.run()
    for record in read_records(run_dir):
        outcome.replies[record.episode, record.turn] = record.reply
        outcome.latency[record.episode, record.turn] = record.latency_s
    return outcome


def overhead(name: str, outcome: Outcome, times: dict[Key, float]) -> str:
    """Median / p99 of request time minus reply time; a negative one means a wrong recompute."""
    extra = sorted(outcome.latency[key] - times[key] for key in times)
    if extra[0] < -1e-3:
        raise RuntimeError(f"{name}: a request took less than its reply time: recompute is wrong")
    return f"{1000 * statistics.median(extra):.0f} / {1000 * extra[int(0.99 * len(extra))]:.0f}"


def main() -> None:
    global EPISODES, TURNS, CONCURRENCY, MEDIAN
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=EPISODES)
    parser.add_argument("--turns", type=int, default=TURNS)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--median", type=float, default=MEDIAN, help="median reply, seconds")
    parser.add_argument("--workers", type=int, nargs="+", default=list(WORKERS))
    parser.add_argument("--lock-step", action="store_true", help="also the paper's schedule")
    args = parser.parse_args()
    EPISODES, TURNS, CONCURRENCY, MEDIAN = args.episodes, args.turns, args.concurrency, args.median
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ours = {n: run_pipeline(work / f"workers{n}", n) for n in args.workers}
        first = ours[args.workers[0]]
        steps = run_lock_step() if args.lock_step else None
        config = compose("http://127.0.0.1:1/v1")  # only for the task set and sampling
        times = reply_times(config, first.replies)
        alone = asyncio.run(replay(config, work / "replay", times, first.replies))
    for name, outcome in [*((f"workers={n}", o) for n, o in ours.items()), ("replay", alone)]:
        if outcome.replies != first.replies:
            raise RuntimeError(f"{name} sent different conversations")
    if steps is not None and steps.replies != first.replies:
        raise RuntimeError("lock-step sent different conversations")
    per_episode = [sum(times[e, t] for t in range(TURNS)) for e in range(EPISODES)]
    per_turn = [max(times[e, t] for e in range(EPISODES)) for t in range(TURNS)]
    ideal, ideal_lock = max(per_episode), sum(per_turn)
    slow = sum(v >= 10 * MEDIAN for v in times.values()) / len(times)
    requests = EPISODES * TURNS

    print(
        f"{EPISODES} episodes x {TURNS} turns, run.concurrency={CONCURRENCY}; reply times "
        f"lognormal, median {1000 * MEDIAN:.0f} ms, sigma {SIGMA:.3f} "
        f"({100 * slow:.1f}% >= 10x median); load average {load_before:.1f} -> "
        f"{os.getloadavg()[0]:.1f}"
    )
    header = f"{'schedule':<22} {'wall s':>7} {'ideal s':>8} {'effic.':>7} "
    print(
        header + f"{'CPU ms/req':>11} {'server':>7} {'req/s/worker':>13} {'extra ms':>11} "
        f"{'start-up s':>11} {'effic. w/o':>11}"
    )
    rows = [(f"pipeline, workers={n}", o, ideal, n) for n, o in ours.items()]
    rows.append(("runner, no HTTP", alone, ideal, 1))
    if steps is not None:
        rows.append(("lock-step", steps, ideal_lock, 1))
    for name, outcome, best, workers in rows:
        server = (
            "-" if outcome.server_cpu is None else f"{1000 * outcome.server_cpu / requests:.2f}"
        )
        extra = overhead(name, outcome, times)
        print(
            f"{name:<22} {outcome.wall:>7.2f} {best:>8.2f} {best / outcome.wall:>7.2f} "
            f"{1000 * outcome.cpu / requests:>11.2f} {server:>7} "
            f"{requests / outcome.wall / workers:>13.0f} {extra:>11} "
            f"{outcome.startup:>11.2f} {best / (outcome.wall - outcome.startup):>11.2f}"
        )
    print(
        "extra ms: request time minus the server's reply time, median / p99; start-up: "
        "workers' start before their runners began; effic. w/o: without it"
    )
    if steps is not None:
        print(
            f"speed-up over lock-step: {steps.wall / first.wall:.2f}x measured, "
            f"{ideal_lock / ideal:.2f}x ideal"
        )
    best = max(ideal / o.wall for o in ours.values())
    verdict = "met" if best >= 0.75 else "MISSED"
    print(f"efficiency target >= 0.75 (best pipeline row): {verdict}")


if __name__ == "__main__":
    main()
