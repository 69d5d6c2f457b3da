"""A provider wrapper that keeps every request it passes on: to see exactly what a model got.

Wraps any provider (scripted, simulated, a real server) and answers with it, so a test or a
debugging session can check the very messages the harness sent, turn by turn: the system
prompt, the user turns and the history as it was written. Requests are kept as tuples of the
(immutable) messages taken at call time, so later changes to the caller's lists cannot alter
what was recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

from providers.base import ChatResult, Message, Provider, Sampling


@dataclass(frozen=True, slots=True)
class Request:
    """One request as it reached the provider."""

    messages: tuple[Message, ...]
    sampling: Sampling


class RecordingProvider(Provider):
    """Passes every request to ``inner`` and keeps a copy of it in :attr:`requests`."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.simulated = inner.simulated
        self.requests: list[Request] = []

    @property
    def label(self) -> str:
        """The wrapped provider's label."""
        return self.inner.label

    async def chat(self, messages: list[Message], sampling: Sampling) -> ChatResult:
        """Record the request, then let the wrapped provider answer it."""
        self.requests.append(Request(messages=tuple(messages), sampling=sampling))
        return await self.inner.chat(messages, sampling)

    async def preflight(self) -> None:
        """See :meth:`Provider.preflight`."""
        await self.inner.preflight()

    async def aclose(self) -> None:
        """See :meth:`Provider.aclose`."""
        await self.inner.aclose()
