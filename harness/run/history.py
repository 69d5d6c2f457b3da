"""What the model is shown of its own past: the history policies of the self-conditioning study.

* ``own``: the model's own answers, as a normal conversation.
* ``healed``: after the model replies, its answer is rewritten to the truth, so the history is
  always correct; what remains of any decline over turns is a long-context effect.
* ``injected``: like healed, but each turn's answer is, with probability ``rate``, the truth
  plus a non-zero offset in [-magnitude, magnitude]; an injected value is always wrong (the
  paper's code drew offsets that could be 0).

Every draw comes from a generator seeded by (seed, episode, turn), so the shown value of any
turn can be recomputed alone (resume, audits) and does not depend on scheduling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from tasks.parsing import ParsedReply, format_answer
from tasks.prompts import Mode, history_reply

HistorySource = Literal["own", "healed", "injected"]

_INJECTION_STREAM = 2
"""Spawn-key prefix of injection draws (0 and 1 are the task generator's streams)."""


@dataclass(frozen=True, slots=True)
class Shown:
    """The assistant turn as the history presents it."""

    text: str
    value: int | None
    injected: bool = False


def injected_offset(seed: int, episode: int, turn: int, rate: float, magnitude: int) -> int:
    """The offset added to the truth at one turn: 0 (not injected) or a non-zero integer."""
    sequence = np.random.SeedSequence(seed, spawn_key=(_INJECTION_STREAM, episode, turn))
    rng = np.random.Generator(np.random.PCG64(sequence))
    hit = rng.random() < rate
    size = int(rng.integers(1, magnitude, endpoint=True))
    sign = 1 if rng.random() < 0.5 else -1
    return sign * size if hit else 0


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

    def rewritten(self, episode: int, turn: int, truth: int) -> Shown:
        """The shown answer of a healed or injected history (also used for filled turns)."""
        offset = 0
        if self.source == "injected":
            offset = injected_offset(self.seed, episode, turn, self.rate, self.magnitude)
        value = truth + offset
        return Shown(text=format_answer(value), value=value, injected=offset != 0)

    def shown(self, episode: int, turn: int, truth: int, parsed: ParsedReply) -> Shown:
        """The shown answer after the model replied with ``parsed``."""
        if self.rewrites:
            return self.rewritten(episode, turn, truth)
        return Shown(text=history_reply(parsed, self.mode), value=parsed.answer)
