"""Majority vote over several samples of one turn (the paper's parallel-compute variant)."""

from __future__ import annotations

from collections import Counter

import numpy as np


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
