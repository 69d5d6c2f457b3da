"""A provider whose replies come from a Python function: for tests and for debugging a run.

Not reachable from the config (a function cannot be written in YAML); construct it in code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from providers.base import ChatResult, Message, Provider, Sampling

Script = Callable[[list[Message], Sampling], ChatResult | Awaitable[ChatResult]]


class ScriptedProvider(Provider):
    """Calls ``script(messages, sampling)`` for every request and records what it was sent."""

    def __init__(self, script: Script, label: str = "scripted") -> None:
        self.script = script
        self._label = label
        self.requests: list[list[Message]] = []

    @property
    def label(self) -> str:
        """See :attr:`Provider.label`."""
        return self._label

    async def chat(self, messages: list[Message], sampling: Sampling) -> ChatResult:
        """See :meth:`Provider.chat`."""
        self.requests.append(messages)
        result = self.script(messages, sampling)
        if isinstance(result, Awaitable):
            result = await result
        return result
