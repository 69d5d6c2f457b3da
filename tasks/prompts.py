"""The conversation a model sees: one system message, then one user message per turn.

The system message is a pure function of the dictionary, the mode and K: no timestamps, no
run ids, no reordering, so every request of an episode shares the same prefix byte for byte
and servers with prefix caching can reuse it. The worked example uses words that are not in
the task's dictionary and answers computed here, so it can never teach a wrong sum.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tasks.parsing import ParsedReply, format_answer
from tasks.words import load_words
from tasks.working import cot_reply

Mode = Literal["direct", "cot", "thinking"]

DICTIONARY_HEADER = "DICTIONARY (word -> value):"
"""Line that precedes the task's dictionary; :func:`read_dictionary` looks for it."""

DEMO_SEED = 20250912
DEMO_DICT_SIZE = 6
DEMO_TURNS = 3

_MODE_RULES: dict[str, str] = {
    "direct": (
        "Reply with the new running total only, written as <answer>N</answer>. "
        "Do not explain or show any working."
    ),
    "cot": (
        "Think step by step in your reply: add the value of each word to the running total, "
        "one word per line. Then write the new running total as <answer>N</answer>."
    ),
    "thinking": (
        "Work it out in your reasoning if you need to; your visible reply must contain only "
        "the new running total, written as <answer>N</answer>."
    ),
}


@dataclass(frozen=True, slots=True)
class DemoTurn:
    """One exchange of the worked example."""

    keys: tuple[str, ...]
    reply: str
    total: int


def demo_turns(
    dictionary: Mapping[str, int], mode: Mode, k: int
) -> tuple[dict[str, int], list[DemoTurn]]:
    """Build the worked example: a small dictionary disjoint from the task's and its turns.

    Demo keys per turn are ``min(k, 3)`` so the example stays short at large K. CoT replies
    use :func:`tasks.working.cot_reply`, the layout the harness also writes into CoT histories.
    """
    rng = np.random.Generator(np.random.PCG64(DEMO_SEED))
    candidates = [w for w in load_words() if w not in dictionary]
    picked = rng.choice(len(candidates), size=min(DEMO_DICT_SIZE, len(candidates)), replace=False)
    demo_words = [candidates[i] for i in picked]
    demo_dict = {
        w: int(v)
        for w, v in zip(demo_words, rng.integers(-99, 100, size=len(demo_words)), strict=True)
    }
    per_turn = min(k, 3)
    total = 0
    turns: list[DemoTurn] = []
    for _ in range(DEMO_TURNS):
        keys = tuple(demo_words[i] for i in rng.integers(0, len(demo_words), size=per_turn))
        values = [demo_dict[word] for word in keys]
        reply = cot_reply(total, keys, values) if mode == "cot" else None
        total += sum(values)
        turns.append(DemoTurn(keys=keys, reply=reply or format_answer(total), total=total))
    return demo_dict, turns


def _format_dictionary(dictionary: Mapping[str, int]) -> str:
    return json.dumps(dict(dictionary), separators=(", ", ": "))


def system_prompt(dictionary: Mapping[str, int], mode: Mode, k: int) -> str:
    """Instructions, the worked example and the task's dictionary, in that order."""
    demo_dict, turns = demo_turns(dictionary, mode, k)
    unit = "one word" if k == 1 else f"{k} words, separated by commas"
    example = [f"User: {', '.join(t.keys)}\nAssistant: {t.reply}" for t in turns]
    return "\n\n".join(
        [
            "You keep a running total. It starts at 0. Each user message gives "
            f"{unit}. Look up the value of each word in the dictionary below, add it to the "
            "running total, and reply with the new running total.",
            _MODE_RULES[mode],
            "EXAMPLE (with a different dictionary):\n"
            f"Example dictionary: {_format_dictionary(demo_dict)}\n\n" + "\n\n".join(example),
            "The example is over. Start again from 0 with the dictionary below.",
            f"{DICTIONARY_HEADER}\n{_format_dictionary(dictionary)}",
        ]
    )


def user_message(keys: Sequence[str]) -> str:
    """The text of one user turn: just the keys."""
    return ", ".join(keys)


def read_dictionary(system_text: str) -> dict[str, int]:
    """Recover the task's dictionary from a system message built by :func:`system_prompt`."""
    _, found, rest = system_text.rpartition(DICTIONARY_HEADER)
    if not found:
        raise ValueError("system message has no dictionary section")
    return {str(w): int(v) for w, v in json.loads(rest.strip().splitlines()[0]).items()}


def read_mode(system_text: str) -> Mode:
    """The mode a system message built by :func:`system_prompt` asks for."""
    for mode, rule in _MODE_RULES.items():
        if rule in system_text:
            return mode  # type: ignore[return-value]
    raise ValueError("system message states no mode")


def history_reply(parsed: ParsedReply, mode: Mode) -> str:
    """What the assistant turn looks like in the history sent with later turns.

    Direct and thinking modes keep just the answer tag (reasoning never goes back); CoT keeps
    the visible reply. A reply without a parseable answer is kept as the model wrote it, so
    the model sees its own malformed output, as it would in a real conversation.
    """
    if parsed.answer is not None and mode != "cot":
        return format_answer(parsed.answer)
    return parsed.visible.strip()
