"""A ``task.source`` shorter than the run asks for is refused in one line, never cut silently."""

import pytest

from tasks.dataset_io import export_task_set
from tasks.generate import generate_task_set
from tasks.source import load_task_set


@pytest.fixture
def source(tmp_path):
    """An exported set of 4 episodes x 12 keys (K=1)."""
    task_set = generate_task_set(samples=4, turns=12, k=1, dict_size=20, seed=5)
    return str(export_task_set(task_set, tmp_path / "exported"))


def load(source, **asked):
    settings = dict(samples=4, turns=12, k=1, dict_size=1, min_value=0, max_value=0, seed=0)
    return load_task_set(**{**settings, **asked}, source=source)


def test_the_whole_source_or_less_is_used_as_asked(source):
    assert (load(source).samples, load(source).turns) == (4, 12)
    chunked = load(source, samples=2, turns=4, k=3)
    assert (chunked.samples, chunked.turns, chunked.k) == (2, 4, 3)


@pytest.mark.parametrize(
    ("asked", "message"),
    [
        (dict(samples=5), "task.samples: {src} holds 4 episodes (got 5; allowed: 1..4)"),
        (
            dict(turns=13),
            "task.turns: {src} has 12 keys per episode, 12 turns of task.k=1 "
            "(got 13; allowed: 1..12)",
        ),
        (
            dict(turns=5, k=3),
            "task.turns: {src} has 12 keys per episode, 4 turns of task.k=3 (got 5; allowed: 1..4)",
        ),
    ],
    ids=["episodes", "turns", "turns_of_k"],
)
def test_a_source_shorter_than_asked_is_a_one_line_error(source, asked, message):
    with pytest.raises(ValueError) as caught:
        load(source, **asked)
    assert str(caught.value) == message.format(src=source)
