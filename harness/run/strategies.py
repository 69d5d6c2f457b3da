"""Execution strategies: how many samples a turn draws and which answer it keeps.

* ``single``: one sample.
* ``majority``: n samples; the most frequent parsed answer wins (the paper's variant).
* ``ahead_by_k``: first-to-ahead-by-k (MAKER, arXiv 2511.09030): sample until one answer
  leads every other by k votes. Against one wrong answer with per-sample accuracy p this is
  the gambler's-ruin walk absorbed at +k or -k: right with probability 1 / (1 + (q/p)^k).

Red flags discard a sample before it votes (overlong, or without a parseable answer); it is
redrawn and counted apart. ``strategy.max_samples`` caps the samples of a turn, red-flagged
ones included; at the cap the plurality answer is taken and the turn is marked ``capped``.

Every sample is its own request with ``n = 1`` and its own seed, a function of (run seed,
episode, turn, sample index) alone. That makes sample i the same reply whether or not a server
honours ``n``, whether it was drawn alone or in a batch, on a resume or from the response
cache (whose key holds the seed); a batch of n choices under one seed would not be. The price:
each sample resends the prompt, which a server with prefix caching reports as cached input.

Samples are drawn in batches of the fewest that could still decide the turn (k minus the
current lead; n minus the valid votes), so a batch can never overshoot the sample at which a
one-at-a-time draw would have stopped: the result is exactly the sequential strategy's, with
the batch's requests in flight together. Nothing here is a library's: no voting package
implements first-to-ahead-by-k with red flags, and the rules are a few lines.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from harness.config import StrategyConfig
from harness.records.schema import SampleRecord
from harness.run.voting import majority_answer
from providers.base import ChatResult, Message, Provider, Sampling
from tasks.parsing import ParsedReply, parse_reply

RedFlag = Literal["overlong", "format"]


def sample_seed(run_seed: int, episode: int, turn: int, index: int) -> int:
    """The sampling seed of sample ``index`` of one turn, independent of scheduling.

    Sample 0 keeps the seed a single-sample run has always used, so such runs replay their
    old cache entries.
    """
    text = f"{run_seed}:{episode}:{turn}" + (f":{index}" if index else "")
    digest = hashlib.blake2b(text.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


@dataclass(frozen=True, slots=True)
class Sample:
    """One drawn sample and what became of it."""

    index: int
    seed: int
    result: ChatResult
    parsed: ParsedReply
    red_flag: RedFlag | None


def red_flag(result: ChatResult, parsed: ParsedReply, strategy: StrategyConfig) -> RedFlag | None:
    """Why a sample is discarded before voting, or None when it votes."""
    limit = strategy.red_flag.max_tokens
    if limit is not None and result.usage.completion_tokens > limit:
        return "overlong"
    if strategy.red_flag.format_errors and parsed.status != "ok":
        return "format"
    return None


def vote_counts(votes: list[int | None]) -> Counter[int | None]:
    """Votes per answer, in order of first appearance."""
    return Counter(votes)


def lead(counts: Counter[int | None]) -> int:
    """How many votes the leading answer has over the runner-up (its count when alone)."""
    top = counts.most_common(2)
    if not top:
        return 0
    return top[0][1] - (top[1][1] if len(top) > 1 else 0)


def more_needed(strategy: StrategyConfig, votes: list[int | None]) -> int:
    """The fewest further valid votes that could decide the turn (0: decided).

    ``ahead_by_k`` counts an unparseable sample as a vote for "no answer", so a model that
    never answers ends its turn as a format error after k such votes rather than at the cap
    (red-flag format errors to have them redrawn instead). ``majority`` and ``single`` need
    a fixed number of valid votes.
    """
    if strategy.name == "ahead_by_k":
        return max(strategy.k - lead(vote_counts(votes)), 0)
    wanted = strategy.n if strategy.name == "majority" else 1
    return max(wanted - len(votes), 0)


@dataclass(frozen=True)
class TurnDraw:
    """Every sample of one turn and the decision they made."""

    samples: list[Sample]
    winner: Sample | None
    """The sample whose reply is scored and shown in the history; None after a failure."""
    failure: ChatResult | None
    """The first sample that failed at the provider (or ran out of context), if any."""
    capped: bool
    """The cap was reached before the strategy decided."""
    counts: Counter[int | None]
    """Valid votes per answer."""
    batches: tuple[int, ...]
    """Batch number of each sample (a batch's requests were in flight together)."""
    voting: bool = True
    """False for the ``single`` strategy."""

    def combined(self) -> ChatResult:
        """One result for the record: the winner's (or failure's) reply, every sample's cost."""
        usage = sum((s.result.usage for s in self.samples[1:]), self.samples[0].result.usage)
        reasons: Counter[str] = Counter()
        slowest: dict[int, float] = {}
        for s, batch in zip(self.samples, self.batches, strict=True):
            reasons.update(s.result.retry_reasons)
            slowest[batch] = max(slowest.get(batch, 0.0), s.result.latency_s)
        base = self.failure or (self.winner or self.samples[0]).result
        return base.model_copy(
            update={
                "usage": usage,
                "retries": sum(s.result.retries for s in self.samples),
                "retry_reasons": dict(reasons),
                "cache_hit": all(s.result.cache_hit for s in self.samples),
                "latency_s": sum(slowest.values()),
                "samples": [],
            }
        )

    def record_fields(self) -> dict[str, Any]:
        """The strategy's fields of a :class:`~harness.records.TurnRecord`.

        Empty for a lone sample that was not red-flagged: such a record stays as small as a
        single-sample run's always was.
        """
        if len(self.samples) == 1 and self.samples[0].red_flag is None and not self.voting:
            return {}
        valid = [s for s in self.samples if s.red_flag is None]
        votes = [s.parsed.answer for s in valid]
        winner = self.winner.parsed.answer if self.winner else None
        ranked = self.counts.most_common(2)
        margin = ranked[0][1] - (ranked[1][1] if len(ranked) > 1 else 0) if ranked else None
        return {
            "n_samples": len(self.samples),
            "red_flags": len(self.samples) - len(valid),
            "capped": self.capped,
            "vote_counts": [[answer, count] for answer, count in self.counts.most_common()],
            "vote_margin": margin,
            "sample_answers": [s.parsed.answer for s in self.samples],
            "agreement": self.counts[winner] / len(votes) if votes else None,
            "samples": [
                SampleRecord(
                    index=s.index,
                    seed=s.seed,
                    status=s.parsed.status,
                    answer=s.parsed.answer,
                    red_flag=s.red_flag,
                    usage=s.result.usage,
                    cache_hit=s.result.cache_hit,
                    finish_reason=s.result.finish_reason,
                )
                for s in self.samples
            ],
        }


def _winner(
    strategy: StrategyConfig, valid: list[Sample], tie_seed: int
) -> tuple[Sample | None, Counter[int | None]]:
    """The deciding sample: the first valid one that gave the winning answer."""
    votes = [s.parsed.answer for s in valid]
    counts = vote_counts(votes)
    if not valid:
        return None, counts
    if len(valid) == 1:  # a lone vote wins whatever it says (and no tie needs breaking)
        return valid[0], counts
    if strategy.name == "ahead_by_k" and lead(counts) >= strategy.k:
        answer = counts.most_common(1)[0][0]
    else:  # majority, single, or a capped race: the plurality answer, None never winning
        answer, _ = majority_answer(votes, np.random.default_rng(tie_seed))
    winner = next((s for s in valid if s.parsed.answer == answer), valid[0])
    return winner, counts


async def draw_turn(
    provider: Provider,
    messages: list[Message],
    sampling: Sampling,
    strategy: StrategyConfig,
    seed_of: Callable[[int], int],
) -> TurnDraw:
    """Sample one turn under ``strategy``; see the module docstring.

    A provider error or context error in any sample ends the turn with that outcome (the
    samples drawn so far are paid for and stay in the record's usage).
    """
    voting = strategy.name != "single"
    samples: list[Sample] = []
    batches: list[int] = []
    batch = 0
    while True:
        valid = [s for s in samples if s.red_flag is None]
        needed = more_needed(strategy, [s.parsed.answer for s in valid])
        room = strategy.max_samples - len(samples)
        if needed == 0 or room == 0:
            break
        first = len(samples)
        seeds = {i: seed_of(i) for i in range(first, first + min(needed, room))}
        requests = [
            provider.chat(messages, sampling.model_copy(update={"n": 1, "seed": seed}))
            for seed in seeds.values()
        ]
        # One request (every single-sample turn) is awaited as it is: no task to schedule.
        results = [await requests[0]] if len(requests) == 1 else await asyncio.gather(*requests)
        for (i, seed), result in zip(seeds.items(), results, strict=True):
            parsed = parse_reply(result.content) if result.outcome == "ok" else _UNPARSED
            flag = red_flag(result, parsed, strategy) if result.outcome == "ok" else None
            samples.append(Sample(i, seed, result, parsed, flag))
            batches.append(batch)
        batch += 1
        failure = next((s.result for s in samples if s.result.outcome != "ok"), None)
        if failure is not None:
            return TurnDraw(samples, None, failure, False, Counter(), tuple(batches), voting)
    valid = [s for s in samples if s.red_flag is None]
    decided = more_needed(strategy, [s.parsed.answer for s in valid]) == 0
    winner, counts = _winner(strategy, valid, seed_of(0))
    if winner is None:  # every sample was red-flagged: score the first as it parsed
        winner = samples[0]
    return TurnDraw(samples, winner, None, not decided, counts, tuple(batches), voting)


_UNPARSED = ParsedReply(status="no_answer", answer=None, visible="")
