"""Tokens of the messages a run sends: from the model's own tokenizer, or from characters.

The pre-run estimate needs the tokens of every user message and reply of a run (up to
millions) without building a prompt. Dict-sum messages are made of few distinct parts: the
dictionary's words, the separator between keys, running totals inside the answer tag, CoT
working lines, and the chat template's wrapper around each message. :class:`MessageTokens`
holds the tokens of each part and adds them up with array indexing.

Where the provider can count (a ``TokenCounter``: the in-process llama.cpp model reads its
own vocabulary, no weights evaluated), each part is counted once, as the difference between
two rendered conversations, so the chat template's own tokens are counted where the model
sees them: between special tokens a tokenizer splits text independently, so the parts add up.
Totals are counted by their length in digits and their sign (a few totals of each length),
which is what tokenizers differ on most: SmolLM2 makes a token of every digit, others one of
up to three. Otherwise every part is its characters / ``chars_per_token`` with no template
tokens, an approximation that the estimate names in its notes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from providers.base import Message
from tasks.parsing import format_answer
from tasks.prompts import system_prompt, user_message
from tasks.taskset import TaskSet
from tasks.working import cot_reply

TokenCounter = Callable[[list[Message]], int]
"""Prompt tokens of a request as the model sees it (chat template and generation prompt)."""

SAMPLES_PER_PART = 8
"""Totals of each digit length, and CoT replies, counted to measure their tokens."""

SEPARATOR_CHARS = len(user_message(["", ""]))
"""Characters between two keys of a user message."""
ANSWER_TAG_CHARS = len(format_answer(0)) - 1
"""Characters of the answer tag around the number."""


def number_chars(values: np.ndarray) -> np.ndarray:
    """Characters of each integer written in base 10, sign included."""
    magnitude = np.abs(values.astype(np.int64))
    count = np.ones(magnitude.shape, dtype=np.int64)
    bound = 10
    while (more := magnitude >= bound).any():
        count += more
        bound *= 10
    return count + (values < 0)


def _number_class(values: np.ndarray) -> np.ndarray:
    """Digit length and sign of each integer, as one index (sign in the lowest bit)."""
    return 2 * number_chars(values) + (values < 0)


@dataclass(frozen=True)
class MessageTokens:
    """Tokens of the parts of dict-sum messages, for one model and one task set."""

    system: float
    """A request holding only the system message (template and generation prompt included)."""
    user_wrapper: float
    """Template tokens around a user message."""
    assistant_wrapper: float
    """Template tokens around an assistant message in the history."""
    words: np.ndarray
    """Tokens of each dictionary word (aligned with ``TaskSet.words``) as a message's first key."""
    separator: float
    """Tokens a further key of a user message adds besides its word."""
    answer_by_class: dict[int, float]
    """Tokens of the answer tag around a total, by the total's digit length and sign."""
    answer_per_char: float
    """Tokens per character of a tag whose digit length was not counted."""
    cot_per_char: float
    """Tokens per character of a CoT reply (working lines and tag)."""
    source: str
    """Where the counts come from, for the estimate's notes."""

    def user_messages(self, task_set: TaskSet) -> np.ndarray:
        """Tokens of every user message with its wrapper, shape (episodes, turns)."""
        keys = self.words[task_set.keys].reshape(task_set.samples, task_set.turns, task_set.k)
        return self.user_wrapper + keys.sum(axis=2) + self.separator * (task_set.k - 1)

    def answers(self, totals: np.ndarray) -> np.ndarray:
        """Tokens of the answer tag of each total (same shape)."""
        classes = _number_class(totals)
        fallback = self.answer_per_char * (ANSWER_TAG_CHARS + number_chars(totals))
        out = fallback.astype(float)
        for number_class, tokens in self.answer_by_class.items():
            out[classes == number_class] = tokens
        return out

    @classmethod
    def from_characters(cls, task_set: TaskSet, mode: str, chars_per_token: float) -> MessageTokens:
        """Characters / ``chars_per_token`` for every part, no template tokens."""
        if chars_per_token <= 0:
            raise ValueError(f"chars_per_token: must be > 0 (got {chars_per_token})")
        system = len(system_prompt(task_set.dictionary, mode, task_set.k))  # type: ignore[arg-type]
        return cls(
            system=system / chars_per_token,
            user_wrapper=0.0,
            assistant_wrapper=0.0,
            words=np.array([len(w) for w in task_set.words], dtype=float) / chars_per_token,
            separator=SEPARATOR_CHARS / chars_per_token,
            answer_by_class={},
            answer_per_char=1 / chars_per_token,
            cot_per_char=1 / chars_per_token,
            source=f"token counts are characters / {chars_per_token:g}, an approximation",
        )

    @classmethod
    def counted(cls, count: TokenCounter, task_set: TaskSet, mode: str, name: str) -> MessageTokens:
        """Every part counted by the model's tokenizer (a few hundred short renderings)."""
        system = Message("system", system_prompt(task_set.dictionary, mode, task_set.k))  # type: ignore[arg-type]
        empty_user = Message("user", "")
        empty_exchange = [empty_user, Message("assistant", "")]
        user_alone, exchange_alone = count([empty_user]), count(empty_exchange)

        def user_tokens(text: str) -> int:
            return count([Message("user", text)]) - user_alone

        def reply_tokens(text: str) -> int:
            return count([empty_user, Message("assistant", text)]) - exchange_alone

        base = count([system])
        words = np.array([user_tokens(w) for w in task_set.words], dtype=float)
        pairs = [(0, 1), (1, 2), (2, 0)] if len(task_set.words) > 2 else [(0, 0)]
        separator = float(
            np.mean(
                [
                    user_tokens(user_message([task_set.words[a], task_set.words[b]]))
                    - words[a]
                    - words[b]
                    for a, b in pairs
                ]
            )
        )
        totals = np.unique(task_set.turn_truth)
        classes = _number_class(totals)
        answer_by_class = {}
        for number_class in np.unique(classes):
            picked = totals[classes == number_class][:SAMPLES_PER_PART]
            answer_by_class[int(number_class)] = float(
                np.mean([reply_tokens(format_answer(int(v))) for v in picked])
            )
        tags = [format_answer(int(v)) for v in totals[:SAMPLES_PER_PART]]
        answer_per_char = sum(map(reply_tokens, tags)) / sum(map(len, tags))
        cot = [_cot_sample(task_set, i) for i in range(SAMPLES_PER_PART)]
        return cls(
            system=float(base),
            user_wrapper=float(count([system, empty_user]) - base),
            assistant_wrapper=float(count([system, *empty_exchange]) - count([system, empty_user])),
            words=words,
            separator=separator,
            answer_by_class=answer_by_class,
            answer_per_char=answer_per_char,
            cot_per_char=sum(map(reply_tokens, cot)) / sum(map(len, cot)),
            source=f"token counts from {name}'s tokenizer (chat template included)",
        )


def _cot_sample(task_set: TaskSet, index: int) -> str:
    """The CoT reply of one (episode, turn) of the task set, answers right."""
    episode = index % task_set.samples
    turn = (index // task_set.samples) % task_set.turns
    start = int(task_set.turn_truth[episode, turn - 1]) if turn else 0
    values = task_set.values[task_set.keys[episode, turn * task_set.k : (turn + 1) * task_set.k]]
    return cot_reply(start, task_set.turn_keys(episode, turn), [int(v) for v in values])
