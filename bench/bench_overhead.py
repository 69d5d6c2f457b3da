"""Harness overhead per turn: CPU time of the harness process and turns per second.

Providers that answer at once, so what is left is the harness's own cost:

* ``instant``: an in-process provider that looks the true total up in a table: the runner
  alone (history, seeds, parsing, records written and flushed);
* ``simulated``: the in-process simulated executor (its own work, which grows with the
  history, runs in this process and is counted);
* ``http``: the OpenAI-compatible adapter (httpx) against the fake server with no latency;
  the server is another process, so its CPU time is not counted, the client's is;
* ``http-httpx2``: the same with the adapter's ``httpx`` module swapped for httpx2, a fork
  whose connection pool does not scan every connection on each request (what-if).

Target: under 1 ms of harness CPU per turn.

``--clients`` instead times bare HTTP clients (1,000 POSTs of a turn-1 request, 100 at a time
over a pool of 100 connections) against the same server: what a request costs before the
harness does anything. ``--profile NAME`` prints the top functions of one case under cProfile
and its CPU time by package.

    python bench/bench_overhead.py
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
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import providers.openai_compatible as adapter
from harness.cli import compose_config
from harness.config import RunConfig
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
CASES = ("instant", "simulated", "http", "http-httpx2")
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


def measure(name: str, run_dir: Path, episodes: int, turns: int) -> tuple[float, float, int]:
    run_dir.mkdir()
    if name.startswith("http"):
        module = name.partition("-")[2] or "httpx"
        original = adapter.httpx
        adapter.httpx = importlib.import_module(module)  # type: ignore[assignment]
        try:
            with running_fake_server() as server:
                model = ["model=openai_compatible", "model.name=fake-model"]
                config = config_for([*model, f"model.base_url={server.base_url}"], episodes, turns)
                provider = create_provider(
                    "openai_compatible", config.model.provider_options(), concurrency=CONCURRENCY
                )
                return asyncio.run(run_case(config, provider, run_dir))
        finally:
            adapter.httpx = original  # type: ignore[assignment]
    config = config_for(["model=simulated"], episodes, turns)
    if name == "simulated":
        provider = create_provider(
            "simulated", config.model.provider_options(), concurrency=CONCURRENCY
        )
    else:
        provider = instant_provider(make_task_set(config), config.run.seed)
    return asyncio.run(run_case(config, provider, run_dir))


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


def compare_clients() -> None:
    body = request_body()
    print(
        f"{CLIENT_REQUESTS} POSTs, {CONCURRENCY} in flight, pool of {CONCURRENCY}; "
        f"load average {os.getloadavg()[0]:.1f}"
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
            asyncio.run(run)
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
    args = parser.parse_args()
    if args.clients:
        compare_clients()
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            measure(args.profile, work / "run", args.episodes, args.turns)
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
        print(f"{'provider':<12} {'CPU ms/turn':>12} {'turns/s':>9} {'target <1 ms':>13}")
        for name in args.cases:
            if name == "http-httpx2" and importlib.util.find_spec("httpx2") is None:
                continue
            cpu, wall, turns = measure(name, work / name, args.episodes, args.turns)
            per_turn = 1000 * cpu / turns
            verdict = "met" if per_turn < 1 else "MISSED"
            print(f"{name:<12} {per_turn:>12.3f} {turns / wall:>9.0f} {verdict:>13}")


if __name__ == "__main__":
    main()
