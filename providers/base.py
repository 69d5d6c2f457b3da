"""The typed interface every model adapter implements.

The runner only ever sees :class:`Provider`, :class:`Sampling` and :class:`ChatResult`, so an
adapter for a new backend is one class with one async method. Failures are *returned* as a
classified :class:`ChatResult` (``context_exceeded`` or ``provider_error``) rather than raised,
because the runner must record them without mistaking them for wrong answers. Only errors that
make the whole run pointless (bad key, unknown model) raise :class:`FatalProviderError`.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant"]
Outcome = Literal["ok", "context_exceeded", "provider_error"]


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message (a plain value: built once per turn, then shared by reference)."""

    role: Role
    content: str

    def as_dict(self) -> dict[str, str]:
        """The OpenAI wire form."""
        return {"role": self.role, "content": self.content}


class Sampling(BaseModel):
    """Sampling settings of one request; every field is passed through when the backend has it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(0.6, ge=0.0, le=2.0)
    """Softmax temperature (the paper uses 0.6)."""
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    """Nucleus sampling mass (the paper uses 0.95)."""
    max_tokens: int = Field(512, ge=1)
    """Upper bound on generated tokens per reply."""
    seed: int | None = None
    """Per-request seed where the backend honours one; derived per episode and turn."""
    n: int = Field(1, ge=1)
    """Number of samples for the same prompt (majority vote)."""
    stop: list[str] = Field(default_factory=list)
    """Stop sequences."""
    extra_body: dict[str, Any] = Field(default_factory=dict)
    """Provider-specific request fields, e.g. ``chat_template_kwargs`` for vLLM."""


class Usage(BaseModel):
    """Token counts of one request."""

    prompt_tokens: int = 0
    """Tokens read, including any served from a prompt cache."""
    completion_tokens: int = 0
    """Tokens generated, including reasoning tokens."""
    reasoning_tokens: int = 0
    """Part of ``completion_tokens`` spent in a hidden reasoning channel."""
    cached_tokens: int = 0
    """Part of ``prompt_tokens`` served from the provider's prompt cache."""
    estimated: bool = False
    """True when the counts were not reported by the backend but approximated by the harness."""

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            estimated=self.estimated or other.estimated,
        )


class ChatResult(BaseModel):
    """What came back from one chat request, whether it succeeded or not."""

    outcome: Outcome = "ok"
    """``ok``, ``context_exceeded`` (a result at long horizons, not retried), ``provider_error``."""
    content: str = ""
    """Visible reply text of the first sample (reasoning removed when the backend separates it)."""
    reasoning: str | None = None
    """Reasoning text kept apart from the content; never put back into the history."""
    samples: list[str] = Field(default_factory=list)
    """Visible text of every sample when ``n > 1``; empty for a single sample."""
    usage: Usage = Field(default_factory=Usage)
    """Token counts of the request (all samples together)."""
    latency_s: float = 0.0
    """Wall time of the request including retries, in seconds."""
    finish_reason: str | None = None
    """Why generation stopped (``stop``, ``length``, ...), as the backend reported it."""
    model_id: str | None = None
    """The model id the backend reported, which may differ from the configured name."""
    error: str | None = None
    """One-line reason when ``outcome`` is not ``ok``."""
    retries: int = 0
    """Attempts beyond the first that this request needed."""
    retry_reasons: dict[str, int] = Field(default_factory=dict)
    """Why each retry happened, by failure class (``429``, ``503``, ``timeout``, ...)."""
    cache_hit: bool = False
    """True when the harness's response cache answered instead of the provider."""


REQUEST_TAG: ContextVar[tuple[int, int] | None] = ContextVar("lhe_request_tag", default=None)
"""(episode, turn) of the request the current task makes; the runner sets it so that a
batching provider can name each line of a batch file (``providers.batching``)."""


class FatalProviderError(RuntimeError):
    """An error that will repeat on every request (bad key, unknown model): stop the run."""


class MissingExtraError(ImportError):
    """An adapter's optional dependency is not installed; the message names the extra."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with: pip install -e '.[{extra}]'"
        )


class Provider(ABC):
    """A chat model the harness can talk to.

    Subclasses set :attr:`simulated` when their answers do not come from a real model, so that
    every output can label them.
    """

    simulated: bool = False
    """True for stand-ins (the simulated executor) whose numbers are not a model's."""

    @property
    @abstractmethod
    def label(self) -> str:
        """Short name for run directories and tables, e.g. ``smollm2`` or ``simulated-p0.95``."""

    @abstractmethod
    async def chat(self, messages: list[Message], sampling: Sampling) -> ChatResult:
        """Send one conversation and return the classified result."""

    async def preflight(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Check, before any episode starts, that the backend is reachable and usable.

        Raise :class:`FatalProviderError` with a one-line message naming the config field
        (``model.base_url: ...``) so a bad setting stops the run before it spends anything.
        """

    def episode(self, index: int) -> AbstractContextManager[None]:
        """Scope of one episode's requests (the runner enters it while the episode runs).

        A batching provider sends a batch once every open episode waits for a reply; other
        providers need nothing here.
        """
        del index
        return contextlib.nullcontext()

    def gate_requests(self, limit: Any) -> bool:
        """Send every request through ``limit`` (a :class:`providers.concurrency.AdaptiveLimit`).

        For ``run.concurrency=auto``; returns False when the provider has no endpoint whose
        load could be adapted to (in-process models), which the harness reports as an error.
        """
        return False

    async def aclose(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Release connections or model memory."""
