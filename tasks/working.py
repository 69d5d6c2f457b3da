"""The chain-of-thought reply layout, written and read back in one place.

A CoT reply shows one line per key, ``before + word (value) = after``, then the answer tag.
The worked example of the system prompt teaches this layout, and every CoT assistant turn the
harness writes itself (filled, healed or injected history) uses the same function: a model
copies the format of its history, so a history of bare ``<answer>N</answer>`` tags teaches a
CoT model to stop showing its working, and a self-conditioning study would then measure that
imitation instead of the effect of earlier mistakes.

:func:`working_lines` is the inverse of :func:`cot_reply`: it finds the lines of that layout
in any text, so "does this reply show its working" (format drift) is judged by the layout the
model was taught. Decoration around a line (a list bullet, ``Step 1:``, extra spaces) is
allowed; working in another shape (``0 + 5 = 5`` without the word) is not the taught layout and
does not count.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from tasks.parsing import MAX_ANSWER_DIGITS, format_answer

_NUMBER = rf"[+-]?\d{{1,{MAX_ANSWER_DIGITS}}}"
_LINE = re.compile(
    rf"(?P<before>{_NUMBER})\s*\+\s*(?P<word>[^\W\d_]+)\s*"
    rf"\(\s*(?P<value>{_NUMBER})\s*\)\s*=\s*(?P<after>{_NUMBER})"
)


@dataclass(frozen=True, slots=True)
class WorkingLine:
    """One line of CoT working: the total before a key, the key, its value, the total after."""

    before: int
    word: str
    value: int
    after: int

    def render(self) -> str:
        """The line as the layout writes it."""
        return f"{self.before} + {self.word} ({self.value}) = {self.after}"


def working(start: int, keys: Sequence[str], values: Sequence[int]) -> list[WorkingLine]:
    """The lines that add ``values`` (one per key, as shown) to ``start``, each on the last."""
    if len(keys) != len(values):
        raise ValueError(f"{len(keys)} keys but {len(values)} values")
    lines: list[WorkingLine] = []
    total = start
    for word, value in zip(keys, values, strict=True):
        lines.append(WorkingLine(before=total, word=word, value=value, after=total + value))
        total += value
    return lines


def cot_reply(start: int, keys: Sequence[str], values: Sequence[int]) -> str:
    """A CoT reply: the working from ``start`` over ``values``, then the tag of its total.

    The values are the ones the reply *shows*; a caller that wants a misread passes the
    misread value, and the total follows from it, as it would in a model's own slip.
    """
    lines = working(start, keys, values)
    total = lines[-1].after if lines else start
    return "\n".join([*(line.render() for line in lines), format_answer(total)])


def working_lines(text: str) -> list[WorkingLine]:
    """Every line of ``text`` in the layout of :func:`cot_reply`, in order (at most one each)."""
    found: list[WorkingLine] = []
    for line in text.splitlines():
        match = _LINE.search(line)
        if match is not None:
            found.append(
                WorkingLine(
                    before=int(match["before"]),
                    word=match["word"],
                    value=int(match["value"]),
                    after=int(match["after"]),
                )
            )
    return found


def shows_working(text: str) -> bool:
    """True when ``text`` has at least one working line of the taught layout."""
    return any(_LINE.search(line) for line in text.splitlines())
