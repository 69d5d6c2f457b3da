"""Scheduling efficiency against a server with heavy-tailed reply times.

100 episodes x 30 turns through the real pipeline (``compose_config`` + ``execute``, model
``openai_compatible``) against the fake server on 127.0.0.1, whose reply times are lognormal
with a median of 100 ms and sigma = ln(10) / 2.326, so about 1% of replies take 1 s or more.

The server draws each reply time from a generator seeded by (seed, request body, attempt), so
a reply's time is a function of the request. The bench recomputes it for every request (the
body bytes httpx sends, the server's own draw) and from that the ideal wall times:

* per-episode scheduling (the harness): the longest episode's sum of reply times;
* lock-step (the paper's code: every turn waits for all episodes): the sum over turns of
  the slowest reply of that turn.

Efficiency = ideal / measured wall time of ``Runner.run`` (summary and report excluded). Each
schedule gets a fresh server with the same options, so all of them send identical requests
and wait identical reply times (checked: every request took at least its reply time).

Rows:

* ``pipeline, httpx``: the real pipeline, the number the target is about;
* ``pipeline, httpx2``: the same with the adapter's ``httpx`` module swapped for httpx2 (a
  fork whose connection pool does not scan every connection per request), if installed;
* ``runner, no HTTP``: the runner with an in-process provider that sleeps each request's
  reply time and returns the server's reply: the scheduling alone, without an HTTP client;
* ``lock-step, httpx``: the paper's schedule with the same adapter.

CPU columns are milliseconds per request of the harness process and of the server process;
the machine has 2 cores, so when their sum exceeds ~2 x wall / requests the cores are the
limit, not the schedule. Other processes on the machine share those cores (load shown).

    python bench/bench_concurrency.py
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import io
import math
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

import providers.openai_compatible as adapter
from harness.cli import compose_config
from harness.config import RunConfig
from harness.pipeline import execute, make_task_set
from harness.records.schema import read_records
from harness.run.conversation import Conversation
from harness.run.history import HistoryPolicy
from harness.run.runner import Runner, request_seed
from providers.base import ChatResult, Message, Sampling
from providers.registry import create_provider
from tasks.parsing import parse_reply
from tasks.prompts import system_prompt
from testing.fake_server import FakeServer, ServerOptions, running_fake_server
from testing.scripted import ScriptedProvider

EPISODES, TURNS, CONCURRENCY = 100, 30, 100
MEDIAN = 0.1
SIGMA = math.log(10) / 2.326
"""P(reply >= 10 x median) = P(Z >= 2.326) = 1%."""

Key = tuple[int, int]


def compose(base_url: str) -> RunConfig:
    return compose_config(
        [
            "model=openai_compatible",
            "model.name=fake-model",
            f"model.base_url={base_url}",
            f"task.samples={EPISODES}",
            f"task.turns={TURNS}",
            f"run.concurrency={CONCURRENCY}",
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
    """The exact bytes the adapter's httpx client sends for one request."""
    options = adapter.OpenAICompatibleConfig.model_validate(config.model.provider_options())
    body = adapter.build_request_body(options.name, messages, sampling, send_seed=options.send_seed)
    return httpx.Request("POST", options.base_url, json=body).content


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
    replies: dict[Key, str] = field(default_factory=dict)
    latency: dict[Key, float] = field(default_factory=dict)


@contextlib.contextmanager
def timed_runner(outcome: Outcome) -> Iterator[None]:
    """Record wall and CPU time of ``Runner.run``: the scheduling, not summary and report."""
    original = Runner.run

    async def run(self: Runner):  # type: ignore[no-untyped-def]
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return await original(self)
        finally:
            outcome.wall = time.perf_counter() - wall
            outcome.cpu = time.process_time() - cpu

    Runner.run = run  # type: ignore[method-assign]
    try:
        yield
    finally:
        Runner.run = original  # type: ignore[method-assign]


@contextlib.contextmanager
def http_module(name: str) -> Iterator[None]:
    """Swap the adapter's ``httpx`` module (only for the what-if row)."""
    original = adapter.httpx
    adapter.httpx = importlib.import_module(name)  # type: ignore[assignment]
    try:
        yield
    finally:
        adapter.httpx = original  # type: ignore[assignment]


def run_pipeline(run_dir: Path, client: str = "httpx") -> Outcome:
    outcome = Outcome()
    with running_fake_server(**server_options()) as server:
        config = compose(server.base_url)
        cpu = process_cpu(server.pid)
        with timed_runner(outcome), http_module(client), contextlib.redirect_stdout(io.StringIO()):
            summary = asyncio.run(execute(config, run_dir))
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
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        steps = run_lock_step()
        ours = run_pipeline(work / "pipeline")
        whatif = (
            run_pipeline(work / "httpx2", "httpx2") if importlib.util.find_spec("httpx2") else None
        )
        config = compose("http://127.0.0.1:1/v1")  # only for the task set and sampling
        times = reply_times(config, steps.replies)
        alone = asyncio.run(replay(config, work / "replay", times, steps.replies))
    for name, outcome in (("pipeline", ours), ("replay", alone)):
        if outcome.replies != steps.replies:
            raise RuntimeError(f"{name} and lock-step sent different conversations")
    per_episode = [sum(times[e, t] for t in range(TURNS)) for e in range(EPISODES)]
    per_turn = [max(times[e, t] for e in range(EPISODES)) for t in range(TURNS)]
    ideal, ideal_lock = max(per_episode), sum(per_turn)
    slow = sum(v >= 1.0 for v in times.values()) / len(times)
    requests = EPISODES * TURNS

    print(
        f"{EPISODES} episodes x {TURNS} turns, run.concurrency={CONCURRENCY}; reply times "
        f"lognormal, median {1000 * MEDIAN:.0f} ms, sigma {SIGMA:.3f} "
        f"({100 * slow:.1f}% >= 1 s); load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    header = f"{'schedule':<20} {'wall s':>7} {'ideal s':>8} {'effic.':>7} "
    print(header + f"{'CPU ms/req':>11} {'server':>7} {'extra ms':>11}")
    rows = [("pipeline, httpx", ours, ideal)]
    if whatif is not None:
        rows.append(("pipeline, httpx2", whatif, ideal))
    rows += [("runner, no HTTP", alone, ideal), ("lock-step, httpx", steps, ideal_lock)]
    for name, outcome, best in rows:
        server = (
            "-" if outcome.server_cpu is None else f"{1000 * outcome.server_cpu / requests:.2f}"
        )
        extra = overhead(name, outcome, times)
        print(
            f"{name:<20} {outcome.wall:>7.2f} {best:>8.2f} {best / outcome.wall:>7.2f} "
            f"{1000 * outcome.cpu / requests:>11.2f} {server:>7} {extra:>11}"
        )
    print("extra ms: request time minus the server's reply time, median / p99")
    print(
        f"speed-up over lock-step: {steps.wall / ours.wall:.2f}x measured (pipeline, httpx), "
        f"{ideal_lock / ideal:.2f}x ideal"
    )
    verdict = "met" if ideal / ours.wall >= 0.9 else "MISSED"
    print(f"efficiency target >= 0.9 (pipeline, httpx): {verdict}")


if __name__ == "__main__":
    main()
