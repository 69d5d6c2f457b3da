"""Turn a model's reply into an integer answer, or say precisely why it is not one.

The parser is total: any string, however hostile, yields a :class:`ParsedReply`. Reasoning in
``<think>`` blocks is removed first, because a model thinking aloud may write ``<answer>`` tags
it later revises; only the visible part counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ParseStatus = Literal["ok", "no_answer", "bad_format", "unterminated_think"]

MAX_ANSWER_DIGITS = 18
"""Longer integers are classified ``bad_format``: no running total here comes near them, and
they would overflow the int64 arrays the metrics use."""

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_INTEGER = re.compile(rf"[+-]?\d{{1,{MAX_ANSWER_DIGITS}}}")


@dataclass(frozen=True, slots=True)
class ParsedReply:
    """The answer extracted from one reply."""

    status: ParseStatus
    answer: int | None
    visible: str
    """The reply with reasoning removed: what a direct/CoT history may show."""


def strip_reasoning(text: str) -> tuple[str, bool]:
    """Remove ``<think>`` blocks; return the visible text and whether a block was left open.

    Chat templates that open the think block themselves make the model emit only the closing
    tag, so text before a lone ``</think>`` is reasoning too.
    """
    visible = _THINK_BLOCK.sub("", text)
    lowered = visible.lower()
    close = lowered.rfind("</think>")
    if close != -1:
        visible = visible[close + len("</think>") :]
        lowered = visible.lower()
    open_at = lowered.find("<think>")
    if open_at != -1:
        return visible[:open_at], True
    return visible, False


def parse_reply(text: str) -> ParsedReply:
    """Classify a reply as ``ok``, ``no_answer``, ``bad_format`` or ``unterminated_think``.

    ``unterminated_think`` wins only when no answer is visible before the open think block:
    a model that answered and then started rambling still answered.
    """
    visible, unterminated = strip_reasoning(text)
    match = _ANSWER.search(visible)
    if match is None:
        status: ParseStatus = "unterminated_think" if unterminated else "no_answer"
        return ParsedReply(status=status, answer=None, visible=visible)
    inner = match.group(1).strip()
    if _INTEGER.fullmatch(inner) is None:
        return ParsedReply(status="bad_format", answer=None, visible=visible)
    return ParsedReply(status="ok", answer=int(inner), visible=visible)


def format_answer(value: int) -> str:
    """The canonical answer tag, as the demo shows it and a direct-mode history stores it."""
    return f"<answer>{value}</answer>"
