"""Build the task set a run asks for: generated from a seed, or imported from a file."""

from __future__ import annotations

from pathlib import Path

from tasks.generate import generate_task_set
from tasks.taskset import TaskSet


def load_task_set(
    *,
    samples: int,
    turns: int,
    k: int,
    dict_size: int,
    min_value: int,
    max_value: int,
    seed: int,
    source: str | None = None,
) -> TaskSet:
    """Generate a task set, or import ``source`` and re-chunk it into turns of ``k``.

    For an import, ``samples`` and ``turns`` cap what is used.
    """
    if source is None:
        return generate_task_set(
            samples=samples,
            turns=turns,
            k=k,
            dict_size=dict_size,
            min_value=min_value,
            max_value=max_value,
            seed=seed,
        )
    path = Path(source).expanduser()
    if not path.exists():
        raise ValueError(f"task.source: no such file or directory: {source}")
    from tasks.dataset_io import import_task_set

    return import_task_set(path).rechunk(k, turns=turns, samples=samples)
