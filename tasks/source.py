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

    For an import, ``samples`` and ``turns`` select what is used. A source with fewer episodes,
    or shorter ones, than asked for is an error rather than a silent cut: a run that measured
    5 episodes while its config says 20 would report an interval from data it does not name.
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

    imported = import_task_set(path)
    if imported.samples < samples:
        raise ValueError(
            f"task.samples: {source} holds {imported.samples} episodes (got {samples}; "
            f"allowed: 1..{imported.samples})"
        )
    if imported.steps // k < turns:
        raise ValueError(
            f"task.turns: {source} has {imported.steps} keys per episode, {imported.steps // k} "
            f"turns of task.k={k} (got {turns}; allowed: 1..{imported.steps // k})"
        )
    return imported.rechunk(k, turns=turns, samples=samples)
