"""The vocabulary dictionary keys are drawn from: common five-letter English words.

The list ships with the package (``tasks/data/words.txt``, one word a line, most frequent
first), so generation never touches the network and the same seed picks the same words on any
machine.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def load_words() -> tuple[str, ...]:
    """All available words, in the file's order (duplicates and blank lines removed)."""
    text = files("tasks").joinpath("data/words.txt").read_text(encoding="utf-8")
    seen: dict[str, None] = {}
    for line in text.splitlines():
        word = line.strip().lower()
        if word and not word.startswith("#"):
            seen.setdefault(word, None)
    return tuple(seen)
