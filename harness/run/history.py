"""What the model is shown of its own past: the history policies of the self-conditioning study.

* ``own``: the model's own answers, as a normal conversation.
* ``healed``: after the model replies, its answer is rewritten to the truth, so the history is
  always correct; what remains of any decline over turns is a long-context effect.
* ``injected``: like healed, but each turn's answer is, with probability ``rate``, the truth
  plus a non-zero offset in [-magnitude, magnitude]; an injected value is always wrong (the
  paper's code drew offsets that could be 0).

In CoT mode a turn the harness writes (filled, healed, injected) is a CoT reply in the layout
of the worked example (:mod:`tasks.working`), not a bare tag: a model copies the format of its
history, and a CoT model shown bare tags stops showing its working. Each such reply works
from the true total before the turn, so its lines add up to the shown value; an injected error
is one misread value line (the line drawn with the offset) and the wrong total follows from it.
As in direct mode, errors do not carry over: the turn after an injected one works from the
truth again. Direct and thinking modes show just the tag.

Every draw comes from a generator seeded by (seed, episode, turn), so the shown text of any
turn can be recomputed alone (resume, audits) and does not depend on scheduling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tasks.parsing import ParsedReply, format_answer
from tasks.prompts import Mode, history_reply
from tasks.working import cot_reply

HistorySource = Literal["own", "healed", "injected"]

_INJECTION_STREAM = 2
"""Spawn-key prefix of injection draws (0 and 1 are the task generator's streams)."""


@dataclass(frozen=True, slots=True)
class Shown:
    """The assistant turn as the history presents it."""

    text: str
    value: int | None
    injected: bool = False
    written: bool = False
    """True when the harness wrote ``text`` (a filled or rewritten turn), not the model."""


@dataclass(frozen=True, slots=True)
class Injection:
    """What the history changes at one turn."""

    offset: int
    """Added to the truth: 0 (not injected) or a non-zero integer."""
    line: int
    """Index of the key whose value a CoT reply misreads by ``offset``."""


def injection(
    seed: int, episode: int, turn: int, rate: float, magnitude: int, keys: int = 1
) -> Injection:
    """The injection draw of one turn; ``keys`` is the number of keys of the turn."""
    sequence = np.random.SeedSequence(seed, spawn_key=(_INJECTION_STREAM, episode, turn))
    rng = np.random.Generator(np.random.PCG64(sequence))
    hit = rng.random() < rate
    size = int(rng.integers(1, magnitude, endpoint=True))
    sign = 1 if rng.random() < 0.5 else -1
    line = int(rng.integers(0, max(keys, 1)))  # drawn last: the offsets stay as they were
    return Injection(offset=sign * size if hit else 0, line=line)


def injected_offset(seed: int, episode: int, turn: int, rate: float, magnitude: int) -> int:
    """The offset added to the truth at one turn: 0 (not injected) or a non-zero integer."""
    return injection(seed, episode, turn, rate, magnitude).offset


@dataclass(frozen=True)
class HistoryPolicy:
    """Decides what each assistant turn looks like in the history."""

    source: HistorySource = "own"
    rate: float = 0.0
    magnitude: int = 10
    seed: int = 0
    mode: Mode = "direct"

    @property
    def rewrites(self) -> bool:
        """True when the shown answers do not depend on the model's replies."""
        return self.source != "own"

    def rewritten(
        self,
        episode: int,
        turn: int,
        truth: int,
        keys: Sequence[str] = (),
        values: Sequence[int] = (),
    ) -> Shown:
        """The shown turn of a healed or injected history (also used for filled turns).

        ``truth`` is the running total after the turn; ``keys`` and their true ``values``
        are needed in CoT mode only, where the written turn shows its working.
        """
        if self.mode == "cot" and (not keys or len(keys) != len(values)):
            raise ValueError("a CoT history turn is written from the turn's keys and values")
        drawn = Injection(offset=0, line=0)
        if self.source == "injected":
            drawn = injection(self.seed, episode, turn, self.rate, self.magnitude, len(keys))
        value = truth + drawn.offset
        if self.mode == "cot":
            shown_values = list(values)
            if drawn.offset:
                shown_values[drawn.line] += drawn.offset
            text = cot_reply(truth - sum(values), keys, shown_values)
        else:
            text = format_answer(value)
        return Shown(text=text, value=value, injected=drawn.offset != 0, written=True)

    def shown(
        self,
        episode: int,
        turn: int,
        truth: int,
        parsed: ParsedReply,
        keys: Sequence[str] = (),
        values: Sequence[int] = (),
    ) -> Shown:
        """The shown turn after the model replied with ``parsed``."""
        if self.rewrites:
            return self.rewritten(episode, turn, truth, keys, values)
        return Shown(text=history_reply(parsed, self.mode), value=parsed.answer)
