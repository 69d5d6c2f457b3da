"""The dict-sum task set: one dictionary, many episodes of keys, and their ground truth.

Everything is held as numpy arrays (key indices into the dictionary), so a task set of 100
episodes x 50,000 keys is a few megabytes and its ground truth one ``cumsum`` away.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class TaskSet:
    """A dictionary and the keys of every episode, chunked into turns of ``k`` keys."""

    words: tuple[str, ...]
    """Dictionary keys, in the order the system prompt lists them."""
    values: np.ndarray
    """Integer value of each word (int64, aligned with ``words``)."""
    keys: np.ndarray
    """Key indices into ``words``, shape (episodes, turns * k)."""
    k: int
    """Keys per user turn (turn complexity K)."""
    origin: str = "generated"
    """Where the episodes came from: ``generated`` or the path they were imported from."""
    seed: int | None = None
    """Seed the set was generated from (None for imports)."""
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.keys.ndim != 2 or self.keys.shape[1] % self.k:
            raise ValueError("keys must have shape (episodes, turns * k)")
        if len(self.words) != len(self.values):
            raise ValueError("words and values differ in length")

    @property
    def samples(self) -> int:
        """Number of episodes."""
        return int(self.keys.shape[0])

    @property
    def turns(self) -> int:
        """User turns per episode."""
        return int(self.keys.shape[1] // self.k)

    @property
    def steps(self) -> int:
        """Keys per episode (task length in steps)."""
        return int(self.keys.shape[1])

    @cached_property
    def dictionary(self) -> dict[str, int]:
        """Word -> value, in prompt order."""
        return {w: int(v) for w, v in zip(self.words, self.values, strict=True)}

    @cached_property
    def step_values(self) -> np.ndarray:
        """Value of every key, shape (episodes, steps)."""
        return self.values[self.keys]

    @cached_property
    def step_truth(self) -> np.ndarray:
        """Running total after every key, shape (episodes, steps)."""
        return np.cumsum(self.step_values, axis=1)

    @cached_property
    def turn_truth(self) -> np.ndarray:
        """Running total after the last key of every turn, shape (episodes, turns)."""
        return self.step_truth[:, self.k - 1 :: self.k]

    @cached_property
    def turn_delta(self) -> np.ndarray:
        """Sum of the values added in each turn, shape (episodes, turns)."""
        return self.step_values.reshape(self.samples, self.turns, self.k).sum(axis=2)

    def turn_keys(self, episode: int, turn: int) -> list[str]:
        """The words of one user turn."""
        row = self.keys[episode, turn * self.k : (turn + 1) * self.k]
        return [self.words[i] for i in row]

    def rechunk(self, k: int, turns: int | None = None, samples: int | None = None) -> TaskSet:
        """The same episodes cut into turns of ``k`` keys (a trailing partial turn is dropped)."""
        usable_turns = self.steps // k
        if turns is not None:
            usable_turns = min(usable_turns, turns)
        if usable_turns < 1:
            raise ValueError(f"task.k: {k} is longer than the episodes ({self.steps} keys)")
        rows = self.samples if samples is None else min(samples, self.samples)
        return TaskSet(
            words=self.words,
            values=self.values,
            keys=self.keys[:rows, : usable_turns * k],
            k=k,
            origin=self.origin,
            seed=self.seed,
        )

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the dictionary and every key: equal fingerprints mean identical tasks."""
        digest = hashlib.sha256()
        digest.update(json.dumps(self.dictionary, separators=(",", ":")).encode())
        digest.update(f"k={self.k};shape={self.keys.shape}".encode())
        digest.update(np.ascontiguousarray(self.keys, dtype="<i4").tobytes())
        return digest.hexdigest()
