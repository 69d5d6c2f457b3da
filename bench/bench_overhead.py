"""Harness overhead per turn: CPU time of the harness process and turns per second.

Providers that answer at once, so what is left is the harness's own cost:

* ``instant``: an in-process provider that looks the true total up in a table: the runner
  alone (history, seeds, parsing, records written and flushed);
* ``simulated``: the in-process simulated executor (its own work, which grows with the
  history, runs in this process and is counted);
* ``http``: the OpenAI-compatible adapter (aiohttp) against the fake server with no latency;
  the server is another process, so its CPU time is not counted, the client's is.

Targets: under 1 ms of harness CPU per turn; through HTTP, at most 0.4 ms per request.

``--loop asyncio uvloop`` runs every case on each event loop, rows side by side (the default
is the loop the harness picks, :func:`harness.event_loop.loop_name`).

``--clients`` instead times bare HTTP clients (1,000 POSTs of a turn-1 request, 100 at a time
over a pool of 100 connections) against the same server: what a request costs before the
harness does anything. ``--profile NAME`` prints the top functions of one case under cProfile
and its CPU time by package.

    python bench/bench_overhead.py
    python bench/bench_overhead.py --cases instant http --loop asyncio uvloop
    python bench/bench_overhead.py --clients
    python bench/bench_overhead.py --profile http --turns 10
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import importlib.util
import os
import pstats
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import providers.openai_compatible as adapter
from harness.cli import compose_config
from harness.config import RunConfig
from harness.event_loop import LoopName, loop_name, run_async
from harness.pipeline import make_task_set
from harness.run.history import HistoryPolicy
from harness.run.runner import Runner, request_seed
from providers.base import ChatResult, Message, Provider, Sampling
from providers.registry import create_provider
from tasks.parsing import format_answer
from tasks.prompts import system_prompt
from tasks.taskset import TaskSet
from testing.fake_server import running_fake_server
from testing.scripted import ScriptedProvider

EPISODES, TURNS, CONCURRENCY = 100, 50, 100
CASES = ("instant", "simulated", "http")
CLIENT_REQUESTS = 1000


def config_for(model: list[str], episodes: int, turns: int) -> RunConfig:
    return compose_config(
        [
            *model,
            f"task.samples={episodes}",
            f"task.turns={turns}",
            f"run.concurrency={CONCURRENCY}",
            "run.progress=false",
            "metrics.bootstrap=0",
        ]
    )


def instant_provider(task_set: TaskSet, run_seed: int) -> Provider:
    """Answers the true total of the requested (episode, turn), found by the request's seed."""
    truth = {
        request_seed(run_seed, e, t): int(task_set.turn_truth[e, t])
        for e in range(task_set.samples)
        for t in range(task_set.turns)
    }

    def answer(messages: list[Message], sampling: Sampling) -> ChatResult:
        return ChatResult(content=format_answer(truth[sampling.seed]), finish_reason="stop")

    return ScriptedProvider(answer, label="instant")


async def run_case(
    config: RunConfig, provider: Provider, run_dir: Path
) -> tuple[float, float, int]:
    """(harness CPU seconds, wall seconds, turns) of one runner pass."""
    task_set = make_task_set(config)
    runner = Runner(
        task_set=task_set,
        provider=provider,
        sampling=config.model.sampling(n=config.run.votes),
        policy=HistoryPolicy(seed=config.run.seed, mode=config.task.mode),
        run_dir=run_dir,
        concurrency=config.run.concurrency,
        run_seed=config.run.seed,
    )
    cpu, wall = time.process_time(), time.perf_counter()
    progress = await runner.run()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await provider.aclose()
    if progress.turns_done != task_set.samples * task_set.turns:
        raise RuntimeError(f"only {progress.turns_done} turns ran")
    return cpu, wall, progress.turns_done


def measure(
    name: str, run_dir: Path, episodes: int, turns: int, loop: LoopName
) -> tuple[float, float, int]:
    run_dir.mkdir()
    if name == "http":
        with running_fake_server() as server:
            model = ["model=openai_compatible", "model.name=fake-model"]
            config = config_for([*model, f"model.base_url={server.base_url}"], episodes, turns)
            provider = create_provider(
                "openai_compatible", config.model.provider_options(), concurrency=CONCURRENCY
            )
            return run_async(run_case(config, provider, run_dir), loop=loop)
    config = config_for(["model=simulated"], episodes, turns)
    if name == "simulated":
        provider = create_provider(
            "simulated", config.model.provider_options(), concurrency=CONCURRENCY
        )
    else:
        provider = instant_provider(make_task_set(config), config.run.seed)
    return run_async(run_case(config, provider, run_dir), loop=loop)


def by_package(stats: pstats.Stats) -> list[tuple[str, float]]:
    """Own (not cumulative) CPU time per top-level package, largest first."""
    totals: Counter[str] = Counter()
    for (path, _line, _name), (_cc, _nc, own, _cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        parts = Path(path).parts
        if "site-packages" in parts:
            package = parts[parts.index("site-packages") + 1]
        elif path.startswith(str(Path.cwd())) and len(parts) > len(Path.cwd().parts):
            package = parts[len(Path.cwd().parts)] + "/ (this project)"
        elif path == "~":
            package = "builtins (C calls, syscalls)"
        else:
            package = "stdlib"
        totals[package.removesuffix(".py")] += own
    return totals.most_common()


def request_body() -> dict:
    task_set = make_task_set(config_for(["model=simulated"], 1, 1))
    system = system_prompt(task_set.dictionary, "direct", task_set.k)
    messages = [Message("system", system), Message("user", task_set.turn_keys(0, 0)[0])]
    return adapter.build_request_body("fake-model", messages, Sampling(seed=1))


async def httpx_like(module_name: str, url: str, body: dict) -> None:
    module = importlib.import_module(module_name)
    limits = module.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with module.AsyncClient(limits=limits) as client:

        async def post() -> None:
            response = await client.post(url, json=body)
            response.raise_for_status()
            response.json()

        await many(post)


async def aiohttp_client(url: str, body: dict) -> None:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post() -> None:
            async with session.post(url, json=body) as response:
                response.raise_for_status()
                await response.json()

        await many(post)


async def many(post: Callable) -> None:
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one() -> None:
        async with semaphore:
            await post()

    await asyncio.gather(*(one() for _ in range(CLIENT_REQUESTS)))


def compare_clients(loop: LoopName) -> None:
    body = request_body()
    print(
        f"{CLIENT_REQUESTS} POSTs, {CONCURRENCY} in flight, pool of {CONCURRENCY}; "
        f"{loop} loop; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'client':<10} {'CPU ms/request':>15} {'requests/s':>11}")
    with running_fake_server() as server:
        url = server.base_url + "/chat/completions"
        for name in ("httpx", "httpx2", "aiohttp"):
            if importlib.util.find_spec(name) is None:
                print(f"{name:<10} {'not installed':>15}")
                continue
            run = aiohttp_client(url, body) if name == "aiohttp" else httpx_like(name, url, body)
            cpu, wall = time.process_time(), time.perf_counter()
            run_async(run, loop=loop)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(
                f"{name:<10} {1000 * cpu / CLIENT_REQUESTS:>15.2f} {CLIENT_REQUESTS / wall:>11.0f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=EPISODES)
    parser.add_argument("--turns", type=int, default=TURNS)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--clients", action="store_true", help="compare bare HTTP clients")
    parser.add_argument("--profile", choices=CASES, help="profile one case instead")
    parser.add_argument("--top", type=int, default=25, help="functions shown by --profile")
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of every (case, loop), interleaved"
    )
    parser.add_argument("--loop", nargs="+", choices=("asyncio", "uvloop"), default=[loop_name()])
    args = parser.parse_args()
    if args.clients:
        for loop in args.loop:
            compare_clients(loop)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            measure(args.profile, work / "run", args.episodes, args.turns, args.loop[0])
            profiler.disable()
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(args.top)
            total = sum(own for _, own in by_package(stats))
            for package, own in by_package(stats)[:15]:
                print(f"{package:<40} {own:7.2f} s {100 * own / total:5.1f}%")
            return
        print(
            f"{args.episodes} episodes x {args.turns} turns, run.concurrency={CONCURRENCY}; "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        print(f"{'provider':<10} {'loop':<8} {'CPU ms/turn':>12} {'turns/s':>9} {'target':>13}")
        rounds = [
            (i, n, loop) for i in range(args.repeat) for n in args.cases for loop in args.loop
        ]
        per_turn: dict[tuple[str, str], list[float]] = {}
        for i, name, loop in rounds:
            cpu, wall, turns = measure(
                name, work / f"{name}-{loop}-{i}", args.episodes, args.turns, loop
            )
            per_turn.setdefault((name, loop), []).append(1000 * cpu / turns)
            ms = per_turn[name, loop][-1]
            print(f"{name:<10} {loop:<8} {ms:>12.3f} {turns / wall:>9.0f} {verdict(name, ms):>13}")
        if args.repeat > 1:
            print(f"median of {args.repeat} rounds (load average {os.getloadavg()[0]:.1f} after):")
            for (name, loop), values in per_turn.items():
                ms = statistics.median(values)
                print(f"{name:<10} {loop:<8} {ms:>12.3f} {'':>9} {verdict(name, ms):>13}")


def verdict(case: str, ms_per_turn: float) -> str:
    """Against the targets: at most 0.4 ms per HTTP request, under 1 ms per turn otherwise."""
    return "met" if ms_per_turn <= (0.4 if case == "http" else 1) else "MISSED"


if __name__ == "__main__":
    main()
