"""Generate dict-sum task sets deterministically from one seed.

Each part draws from its own child of ``SeedSequence(seed)``: the dictionary from spawn key
(0,), episode ``i`` from (1, i). Episode ``i`` is therefore the same whether 10 or 1,000
episodes are generated, and adding episodes never shifts the others.
"""

from __future__ import annotations

import numpy as np

from tasks.taskset import TaskSet
from tasks.words import load_words


def _rng(seed: int, *spawn_key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=spawn_key)))


def make_dictionary(
    dict_size: int, min_value: int, max_value: int, seed: int
) -> tuple[tuple[str, ...], np.ndarray]:
    """Pick ``dict_size`` distinct words and give each a uniform integer value."""
    vocabulary = load_words()
    if not 1 <= dict_size <= len(vocabulary):
        raise ValueError(
            f"task.dict_size: must be between 1 and {len(vocabulary)}, got {dict_size}"
        )
    if min_value > max_value:
        raise ValueError(f"task.min_value: must be <= task.max_value ({min_value} > {max_value})")
    rng = _rng(seed, 0)
    chosen = rng.choice(len(vocabulary), size=dict_size, replace=False)
    words = tuple(vocabulary[i] for i in chosen)
    values = rng.integers(min_value, max_value, size=dict_size, endpoint=True, dtype=np.int64)
    return words, values


def generate_task_set(
    *,
    samples: int,
    turns: int,
    k: int,
    dict_size: int = 100,
    min_value: int = -99,
    max_value: int = 99,
    seed: int = 42,
) -> TaskSet:
    """Draw a dictionary and ``samples`` episodes of ``turns`` x ``k`` keys (with replacement)."""
    if samples < 1 or turns < 1 or k < 1:
        raise ValueError("samples, turns and k must be >= 1")
    words, values = make_dictionary(dict_size, min_value, max_value, seed)
    steps = turns * k
    keys = np.empty((samples, steps), dtype=np.int32)
    for episode in range(samples):
        keys[episode] = _rng(seed, 1, episode).integers(0, dict_size, size=steps, dtype=np.int32)
    return TaskSet(words=words, values=values, keys=keys, k=k, origin="generated", seed=seed)
