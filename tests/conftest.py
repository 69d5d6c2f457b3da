from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from harness.config import RunConfig, load_config
from testing.fake_server import FAST_RETRIES, RunningServer, running_fake_server


@pytest.fixture
def fake_server() -> Iterator[Callable[..., RunningServer]]:
    """Start fake servers with the given options; every one is stopped by pid at teardown."""
    with ExitStack() as stack:

        def start(env: dict[str, str] | None = None, **options: Any) -> RunningServer:
            return stack.enter_context(running_fake_server(env=env, **options))

        yield start


def make_run_config(base_url: str, *, model: dict | None = None, **sections: Any) -> RunConfig:
    """A small run against an OpenAI-compatible URL, validated like the CLI's config."""
    raw: dict[str, Any] = {
        "model": {
            "provider": "openai_compatible",
            "name": "fake-model",
            "base_url": base_url,
            "max_tokens": 16,
            **FAST_RETRIES,
            **(model or {}),
        },
        "task": {"samples": 6, "turns": 8, "k": 2, "seed": 3},
        "run": {"concurrency": 6, "seed": 1, "progress": False},
        "metrics": {"bootstrap": 0},
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return load_config(raw)


@pytest.fixture
def run_config() -> Callable[..., RunConfig]:
    return make_run_config
