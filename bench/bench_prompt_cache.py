"""Prefix reuse in the in-process llama.cpp adapter: time per turn late in an episode.

One episode of the embedded SmolLM2-135M-Instruct (``model=smollm2``), run turn by turn with
``prompt_cache: true`` (each request re-evaluates only what follows the prefix it shares with
the previous one). Then the requests of the last turns are sent again, identical, to a second
instance with ``prompt_cache: false`` (every prompt evaluated from scratch). Ratio = time per
turn without reuse / with reuse, over the same requests.

It also checks what reuse depends on: that each request of the episode starts, byte for byte,
with the previous one (its JSON message list, the prompt the chat template renders, and its
tokens).

    python bench/bench_prompt_cache.py
    python bench/bench_prompt_cache.py --turns 50 --last 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time

from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from harness.cli import compose_config
from harness.config import RunConfig
from harness.pipeline import make_task_set
from harness.run.conversation import Conversation
from harness.run.history import HistoryPolicy
from harness.run.runner import request_seed
from providers.base import Message, Provider, Sampling
from providers.registry import create_provider
from tasks.parsing import parse_reply
from tasks.prompts import system_prompt

Request = tuple[list[Message], Sampling]


def make_provider(config: RunConfig, prompt_cache: bool) -> Provider:
    options = {**config.model.provider_options(), "prompt_cache": prompt_cache}
    return create_provider(config.model.provider, options, concurrency=1)


async def run_episode(config: RunConfig, provider: Provider) -> tuple[list[Request], list[float]]:
    """Every request of episode 0 and its wall time, with the harness's own history rules."""
    task_set = make_task_set(config)
    policy = HistoryPolicy(seed=config.run.seed, mode=config.task.mode)
    conversation = Conversation(system=system_prompt(task_set.dictionary, policy.mode, task_set.k))
    base = config.model.sampling(n=config.run.votes)
    requests, times = [], []
    for turn in range(task_set.turns):
        messages = conversation.ask(task_set.turn_keys(0, turn))
        sampling = base.model_copy(update={"seed": request_seed(config.run.seed, 0, turn)})
        start = time.perf_counter()
        result = await provider.chat(messages, sampling)
        times.append(time.perf_counter() - start)
        if result.outcome != "ok":
            raise RuntimeError(f"turn {turn}: {result.outcome}: {result.error}")
        requests.append((messages, sampling))
        truth = int(task_set.turn_truth[0, turn])
        conversation.answer(policy.shown(0, turn, truth, parse_reply(result.content)))
    return requests, times


async def replay(provider: Provider, requests: list[Request]) -> list[float]:
    times = []
    for messages, sampling in requests:
        start = time.perf_counter()
        await provider.chat(messages, sampling)
        times.append(time.perf_counter() - start)
    return times


def prefix_checks(provider: Provider, requests: list[Request]) -> dict[str, str]:
    """For consecutive requests: is the earlier one a prefix of the later, per representation?"""
    llm = provider._llm  # type: ignore[attr-defined]
    formatter = Jinja2ChatFormatter(
        template=llm.metadata["tokenizer.chat_template"],
        eos_token=llm._model.token_get_text(llm.token_eos()),
        bos_token=llm._model.token_get_text(llm.token_bos()),
    )
    wire, prompts, tokens = [], [], []
    for messages, _ in requests:
        dicts = [m.as_dict() for m in messages]
        wire.append(json.dumps(dicts, ensure_ascii=False).removesuffix("]"))
        prompts.append(formatter(messages=dicts).prompt)
        tokens.append(llm.tokenize(prompts[-1].encode(), add_bos=False, special=True))
    pairs = range(len(requests) - 1)
    shared = [sum(1 for _ in _common(tokens[i], tokens[i + 1])) / len(tokens[i]) for i in pairs]
    return {
        "JSON message lists": f"{sum(wire[i + 1].startswith(wire[i]) for i in pairs)}/{len(pairs)}",
        "rendered prompts": f"{sum(prompts[i + 1].startswith(prompts[i]) for i in pairs)}"
        f"/{len(pairs)}",
        "tokens (shared share)": f"min {min(shared):.3f}, mean {statistics.mean(shared):.3f}",
        "prompt tokens at the last turn": str(len(tokens[-1])),
    }


def _common(a: list[int], b: list[int]):
    for x, y in zip(a, b, strict=False):
        if x != y:
            return
        yield x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=50, help="turns of the episode")
    parser.add_argument("--last", type=int, default=5, help="final turns timed both ways")
    args = parser.parse_args()
    config = compose_config(["model=smollm2", f"task.turns={args.turns}", "task.samples=1"])
    load = os.getloadavg()[0]

    cached = make_provider(config, prompt_cache=True)
    requests, with_reuse = asyncio.run(run_episode(config, cached))
    checks = prefix_checks(cached, requests)
    asyncio.run(cached.aclose())
    uncached = make_provider(config, prompt_cache=False)
    late = requests[-args.last :]
    without_reuse = asyncio.run(replay(uncached, late))
    asyncio.run(uncached.aclose())

    first = len(requests) - args.last + 1
    reuse_ms = 1000 * statistics.mean(with_reuse[-args.last :])
    scratch_ms = 1000 * statistics.mean(without_reuse)
    print(
        f"SmolLM2-135M-Instruct Q4_1, llama.cpp in-process, {os.cpu_count()} cores, no GPU; "
        f"one episode of {args.turns} turns (max_tokens {config.model.max_tokens}); "
        f"load average {load:.1f}"
    )
    print(f"time per turn, turns {first}-{len(requests)} (mean of {args.last}):")
    print(f"  prompt_cache: true   {reuse_ms:8.0f} ms")
    print(f"  prompt_cache: false  {scratch_ms:8.0f} ms")
    print(f"  ratio                {scratch_ms / reuse_ms:8.1f}x")
    print(f"  turn 1 (nothing to reuse yet): {1000 * with_reuse[0]:.0f} ms")
    print("consecutive requests of the episode, earlier one a prefix of the later:")
    for name, value in checks.items():
        print(f"  {name:<32} {value}")


if __name__ == "__main__":
    main()
