from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from harness.config import RunConfig, load_config
from providers.fake_server import RunningServer, running_fake_server

# Fast retries and a short read timeout, so stalls and backoffs resolve within a test.
FAST_RETRIES = {
    "connect_timeout": 5.0,
    "read_timeout": 3.0,
    "preflight_timeout": 5.0,
    "max_attempts": 12,
    "backoff_initial": 0.01,
    "backoff_max": 0.05,
    "backoff_jitter": 0.01,
    "max_retry_after": 0.2,
    "max_malformed_retries": 8,
}


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
