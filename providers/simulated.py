"""A simulated executor: behaves like a model with a known per-step accuracy.

It has no side channel to the truth. Like a model, it reads the dictionary from the system
message, the keys from the last user message and its running total from its last answer in
the history, then adds each value correctly with probability ``1 - error`` (else adds a wrong
value). Asked for chain of thought, it shows its working in the worked example's layout,
a wrong value as a misread line. It exists to calibrate the metrics against Proposition 1
(a turn of K keys is right with probability p^K), for fast tests and demos. Its numbers are
never a model's, and every output that shows them says so.

Replies are a pure function of the conversation and the seed (the generator is seeded from a
hash of both), so a resumed or retried turn gets the same reply and concurrency never changes
the results.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from providers.base import ChatResult, Message, Provider, Sampling, Usage
from tasks.parsing import format_answer, parse_reply
from tasks.prompts import read_dictionary, read_mode
from tasks.working import cot_reply

ErrorKind = Literal[
    "value_only", "stale", "skipped_key", "doubled_key", "sign_flip", "wrong_key", "arithmetic"
]
"""Shapes of a wrong turn the executor can make, named as the error taxonomy names them
(``harness.analysis.failures``)."""


class SimulatedConfig(BaseModel):
    """Knobs of the simulated executor."""

    model_config = ConfigDict(extra="forbid")

    p: float = Field(0.95, ge=0.0, le=1.0)
    """Probability that one step (one key) is added correctly."""
    self_conditioning: float = Field(0.0, ge=0.0, le=1.0)
    """Extra per-step error rate per unit share of wrong answers in the visible history."""
    context_decay: float = Field(0.0, ge=0.0, le=1.0)
    """Extra per-step error rate per earlier turn in the history."""
    wrong_values: int | None = Field(None, ge=1, le=198)
    """How many different wrong answers a turn can get: every wrong sample of one
    conversation picks one of this many, fixed per conversation (1: a two-outcome race, the
    case of the gambler's-ruin formulas). null: a fresh wrong value per sample."""
    seed: int = 0
    """Seed mixed into every reply's generator."""
    chars_per_token: float = Field(4.0, gt=0.0)
    """Approximation used for the (estimated) token counts."""
    latency_s: float = Field(0.0, ge=0.0)
    """Seconds each reply takes (an asyncio sleep), to exercise scheduling and interrupts."""
    error_mix: dict[ErrorKind, float] | None = None
    """Relative weights of the kind of a wrong turn (``{value_only: 0.5, arithmetic: 0.5}``);
    a turn with any wrong step makes one error of a kind drawn from them. None: every wrong
    step adds a non-zero offset in [-10, 10] of its own."""

    @field_validator("error_mix")
    @classmethod
    def _check_mix(cls, mix: dict[str, float] | None) -> dict[str, float] | None:
        if mix is not None and (any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0):
            raise ValueError("weights must be >= 0 with a positive sum")
        return mix


_OFFSETS = np.concatenate([np.arange(-99, 0), np.arange(1, 100)])
"""The wrong offsets ``wrong_values`` picks from."""


# Every request re-reads the whole conversation (the fake server answers each turn anew), so
# what repeats across requests is parsed once: the dictionary of the system message, and the
# answer of each assistant message (a few hundred distinct ``<answer>N</answer>`` texts).
@functools.lru_cache(maxsize=1 << 14)
def _last_answer(content: str) -> int | None:
    return parse_reply(content).answer


@functools.lru_cache(maxsize=16)
def _dictionary(system_text: str) -> dict[str, int]:
    """:func:`read_dictionary`, shared: callers only read it."""
    return read_dictionary(system_text)


class SimulatedProvider(Provider):
    """See the module docstring."""

    simulated = True

    def __init__(self, config: SimulatedConfig) -> None:
        self.config = config

    @property
    def label(self) -> str:
        """See :attr:`Provider.label`."""
        return f"simulated-p{self.config.p:g}"

    def step_error_rate(self, wrong_share: float, earlier_turns: int) -> float:
        """Per-step error probability given what the history shows."""
        error = (
            (1.0 - self.config.p)
            + self.config.self_conditioning * wrong_share
            + self.config.context_decay * earlier_turns
        )
        return float(min(max(error, 0.0), 1.0))

    def _rng(self, messages: list[Message], salt: str) -> np.random.Generator:
        digest = hashlib.blake2b(digest_size=16)
        digest.update(f"{self.config.seed}|{salt}".encode())
        # One update of the whole text: the same bytes as one update per part, so the same seed.
        digest.update("".join([f"{m.role}\x00{m.content}\x01" for m in messages]).encode())
        return np.random.default_rng(int.from_bytes(digest.digest(), "little"))

    def _answer(self, messages: list[Message], sampling: Sampling, replicate: int) -> str:
        dictionary = _dictionary(messages[0].content)
        user_turns = [m for m in messages if m.role == "user"]
        assistant_turns = [m for m in messages if m.role == "assistant"]
        # Recompute the truth of every earlier turn to see how many shown answers are wrong.
        true_total = 0
        wrong = 0
        for user, assistant in zip(user_turns, assistant_turns, strict=False):
            true_total += sum(dictionary[w.strip()] for w in user.content.split(","))
            if _last_answer(assistant.content) != true_total:
                wrong += 1
        earlier = len(assistant_turns)
        wrong_share = wrong / earlier if earlier else 0.0
        base = 0
        for assistant in reversed(assistant_turns):
            shown = _last_answer(assistant.content)
            if shown is not None:
                base = shown
                break
        error = self.step_error_rate(wrong_share, earlier)
        rng = self._rng(messages, f"{sampling.seed}|{replicate}")
        keys = [w.strip() for w in user_turns[-1].content.split(",")]
        if self.config.error_mix is not None:
            values = [dictionary[key] for key in keys]
            answer = self._mixed_total(base, values, dictionary, error, rng)
            # A CoT reply's working ends at the answer: the last value carries the error.
            values[-1] += answer - base - sum(values)
        else:
            values = []
            for key in keys:
                value = dictionary[key]
                if rng.random() < error:
                    offset = int(rng.integers(1, 11)) * (1 if rng.random() < 0.5 else -1)
                    value += offset
                values.append(value)
            slip = sum(values) - sum(dictionary[key] for key in keys)
            if self.config.wrong_values is not None and slip != 0:
                values[-1] += self._wrong_offset(messages, rng) - slip  # total: right + offset
        if read_mode(messages[0].content) == "cot":
            return cot_reply(base, keys, values)
        return format_answer(base + sum(values))

    def _mixed_total(
        self,
        base: int,
        values: list[int],
        dictionary: dict[str, int],
        error: float,
        rng: np.random.Generator,
    ) -> int:
        """The answer under ``error_mix``: a turn of K steps is right with probability p^K.

        A wrong turn makes one error of a drawn kind at its first wrong step. A kind that
        cannot be wrong here (the value alone when the base is 0, a skipped value of 0)
        becomes an arithmetic slip, so the turn stays wrong and p^K stays exact.
        """
        update = base + sum(values)
        wrong_steps = np.flatnonzero(rng.random(len(values)) < error)
        if not wrong_steps.size:
            return update
        mix = self.config.error_mix or {}
        kinds = sorted(mix)
        weights = np.array([mix[kind] for kind in kinds], dtype=np.float64)
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        value = values[int(wrong_steps[0])]
        if kind == "wrong_key":
            others = sorted({v for v in dictionary.values() if v != value})
            answer = update - value + int(rng.choice(others)) if others else update
        else:
            answer = {
                "value_only": sum(values),
                "stale": base,
                "skipped_key": update - value,
                "doubled_key": update + value,
                "sign_flip": update - 2 * value,
            }.get(kind, update)
        if answer == update:  # an arithmetic slip, drawn or as the fallback
            answer += int(rng.integers(1, 11)) * (1 if rng.random() < 0.5 else -1)
        return answer

    def _wrong_offset(self, messages: list[Message], rng: np.random.Generator) -> int:
        """One of the conversation's ``wrong_values`` offsets (the same set for every sample)."""
        count = self.config.wrong_values or 1
        offsets = self._rng(messages, "wrong").choice(_OFFSETS, count, replace=False)
        return int(offsets[int(rng.integers(count))])

    async def chat(self, messages: list[Message], sampling: Sampling) -> ChatResult:
        """See :meth:`Provider.chat`."""
        if self.config.latency_s:
            await asyncio.sleep(self.config.latency_s)
        samples = [self._answer(messages, sampling, i) for i in range(sampling.n)]
        prompt_chars = sum(len(m.content) for m in messages)
        completion_chars = sum(len(s) for s in samples)
        per_token = self.config.chars_per_token
        return ChatResult(
            content=samples[0],
            samples=samples if sampling.n > 1 else [],
            usage=Usage(
                prompt_tokens=round(prompt_chars / per_token),
                completion_tokens=round(completion_chars / per_token),
                estimated=True,
            ),
            finish_reason="stop",
            model_id=self.label,
            latency_s=self.config.latency_s,
        )


def create(config: dict[str, Any], *, concurrency: int) -> SimulatedProvider:
    """Registry factory."""
    del concurrency  # no connections to size
    return SimulatedProvider(SimulatedConfig.model_validate(config))
