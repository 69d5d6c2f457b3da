"""Turn a model's reply into an integer answer, or say precisely why it is not one.

The parser is total: any string, however hostile, yields a :class:`ParsedReply`. Reasoning in
``<think>`` blocks is removed first, because a model thinking aloud may write ``<answer>`` tags
it later revises; only the visible part counts.

Two readings of a reply live here. :func:`parse_reply` is the strict one: it alone scores
turns and decides what the history shows. :func:`flexible_answer` is the lenient view beside
it (lm-eval's ``flexible-extract`` beside ``strict-match``): where the strict parser finds no
usable tag it takes the last integer of the visible reply, so a report can tell a model that
cannot add from one that cannot follow the format.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Literal

ParseStatus = Literal["ok", "no_answer", "bad_format", "unterminated_think"]

MAX_ANSWER_DIGITS = 18
"""Longer integers are classified ``bad_format``: no running total here comes near them, and
they would overflow the int64 arrays the metrics use."""

_THINK_OPEN = re.compile("<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile("</think>", re.IGNORECASE)
_THINK_TAG_END = re.compile("think>", re.IGNORECASE)
"""In both think tags, with the same flags: a text without it has neither tag."""
_ANSWER_OPEN = re.compile("<answer>", re.IGNORECASE)
_ANSWER_CLOSE = re.compile("</answer>", re.IGNORECASE)
_INTEGER = re.compile(rf"[+-]?\d{{1,{MAX_ANSWER_DIGITS}}}")
_LOOSE_NUMBER = re.compile(r"(?<![\d.])-?\d+(?:\.\d+)?")
"""A number in free text. It starts after neither a digit nor a point, so a minus right after
a digit is an operator (``12-5`` ends in 5, not -5) and a decimal (``12.5``, ``.5``) is one
number, never the integers around its point."""


@dataclass(frozen=True, slots=True)
class ParsedReply:
    """The answer extracted from one reply."""

    status: ParseStatus
    answer: int | None
    visible: str
    """The reply with reasoning removed: what a direct/CoT history may show."""


def _without_think_blocks(text: str) -> str:
    """Remove every closed ``<think>`` block, each to the nearest close after its open.

    Searched tag by tag rather than with one lazy ``<think>.*?</think>`` pattern, which
    rescans the rest of the text from every unclosed open tag: quadratic, hours for a
    reply of a few megabytes.
    """
    kept: list[str] = []
    position = 0
    while (opened := _THINK_OPEN.search(text, position)) is not None:
        closed = _THINK_CLOSE.search(text, opened.end())
        if closed is None:
            break  # no later open tag has a close either
        kept.append(text[position : opened.start()])
        position = closed.end()
    kept.append(text[position:])
    return "".join(kept)


def strip_reasoning(text: str) -> tuple[str, bool]:
    """Remove ``<think>`` blocks; return the visible text and whether a block was left open.

    Chat templates that open the think block themselves make the model emit only the closing
    tag, so text before a lone ``</think>`` is reasoning too. Tags are found case-insensitively
    in the text itself: indices from a lowercased copy would be off after any character whose
    lowercase is longer (U+0130).
    """
    if _THINK_TAG_END.search(text) is None:  # most replies: one scan instead of three
        return text, False
    visible = _without_think_blocks(text)
    last_close = deque(_THINK_CLOSE.finditer(visible), maxlen=1)
    if last_close:
        visible = visible[last_close[0].end() :]
    opened = _THINK_OPEN.search(visible)
    if opened is not None:
        return visible[: opened.start()], True
    return visible, False


def parse_reply(text: str) -> ParsedReply:
    """Classify a reply as ``ok``, ``no_answer``, ``bad_format`` or ``unterminated_think``.

    ``unterminated_think`` wins only when no answer is visible before the open think block:
    a model that answered and then started rambling still answered.
    """
    visible, unterminated = strip_reasoning(text)
    opened = _ANSWER_OPEN.search(visible)
    closed = _ANSWER_CLOSE.search(visible, opened.end()) if opened else None
    if opened is None or closed is None:
        status: ParseStatus = "unterminated_think" if unterminated else "no_answer"
        return ParsedReply(status=status, answer=None, visible=visible)
    inner = visible[opened.end() : closed.start()].strip()
    if _INTEGER.fullmatch(inner) is None:
        return ParsedReply(status="bad_format", answer=None, visible=visible)
    return ParsedReply(status="ok", answer=int(inner), visible=visible)


def format_answer(value: int) -> str:
    """The canonical answer tag, as the demo shows it and a direct-mode history stores it."""
    return f"<answer>{value}</answer>"


def flexible_answer(text: str) -> int | None:
    """The strict answer when there is one, else the last integer of the visible reply.

    None when the visible reply ends in no integer at all: its last number is a decimal, has
    more than :data:`MAX_ANSWER_DIGITS` digits, or there is no number. Reasoning is stripped
    as for the strict parser, so a number the model only thought never counts.
    """
    parsed = parse_reply(text)
    if parsed.answer is not None:
        return parsed.answer
    last = deque(_LOOSE_NUMBER.finditer(parsed.visible), maxlen=1)
    if not last:
        return None
    number = last[0].group()
    if "." in number or len(number.lstrip("-")) > MAX_ANSWER_DIGITS:
        return None
    return int(number)
