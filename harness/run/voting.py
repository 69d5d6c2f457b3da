"""Majority vote over several samples of one turn (the paper's parallel-compute variant)."""

from __future__ import annotations

import asyncio
from collections import Counter

import numpy as np

from providers.base import ChatResult, Message, Provider, Sampling


def majority_answer(
    answers: list[int | None], rng: np.random.Generator
) -> tuple[int | None, float]:
    """The most frequent parsed answer and the share of samples that gave it.

    Unparseable samples (None) never win while any sample parsed; ties between answers are
    broken by ``rng`` (seeded per turn by the caller) so a rerun picks the same winner.
    """
    if not answers:
        return None, 0.0
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None, 0.0
    top = max(counts.values())
    tied = sorted(value for value, count in counts.items() if count == top)
    winner = tied[int(rng.integers(len(tied)))] if len(tied) > 1 else tied[0]
    return winner, top / len(answers)


async def sample_n(provider: Provider, messages: list[Message], sampling: Sampling) -> ChatResult:
    """Ask for ``sampling.n`` samples, topping up with single requests where ``n`` is ignored.

    One request carries ``n`` where the backend honours it; missing samples are then asked
    one at a time, each with its own derived seed. Servers that ignore ``n`` (llama.cpp's,
    many proxies) return one choice; without the top-up a majority vote would silently be a
    vote of one.
    """
    result = await provider.chat(messages, sampling)
    wanted = sampling.n
    if wanted <= 1 or result.outcome != "ok" or len(result.samples) >= wanted:
        return result
    samples = list(result.samples or [result.content])
    base_seed = sampling.seed or 0
    extra = await asyncio.gather(
        *(
            provider.chat(
                messages,
                sampling.model_copy(update={"n": 1, "seed": (base_seed + 7919 * (i + 1)) % 2**31}),
            )
            for i in range(wanted - len(samples))
        )
    )
    usage, retries, reasons = result.usage, result.retries, Counter(result.retry_reasons)
    for other in extra:
        usage = usage + other.usage
        retries += other.retries
        reasons.update(other.retry_reasons)
        if other.outcome == "ok":
            samples.append(other.content)
    return result.model_copy(
        update={
            "samples": samples,
            "usage": usage,
            "retries": retries,
            "retry_reasons": dict(reasons),
            "latency_s": result.latency_s + max((o.latency_s for o in extra), default=0.0),
        }
    )
