"""One episode as a conversation: the history the model sees and how it grows.

Kept apart from the runner's scheduling so that resume can rebuild a conversation from
records with exactly the code that built it the first time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.run.history import Shown
from providers.base import Message
from tasks.prompts import user_message


@dataclass
class Conversation:
    """Messages of one episode plus the total its history currently shows.

    The full history is kept; ``window`` limits what is *sent* to the last N exchanges (the
    system message, which holds the dictionary, is always sent).
    """

    system: str
    window: int | None = None
    messages: list[Message] = field(default_factory=list)
    shown_total: int = 0
    """Last answer visible in the history (0 before any): the base of the next turn."""

    def __post_init__(self) -> None:
        if not self.messages:
            self.messages.append(Message("system", self.system))

    def ask(self, keys: list[str]) -> list[Message]:
        """Append the user turn and return the messages to send (a new list, same messages)."""
        self.messages.append(Message("user", user_message(keys)))
        if self.window is None:
            return list(self.messages)
        kept = 2 * self.window + 1  # N earlier exchanges plus the new user turn
        return [self.messages[0], *self.messages[max(1, len(self.messages) - kept) :]]

    def answer(self, shown: Shown) -> None:
        """Append the assistant turn as the history shows it."""
        self.messages.append(Message("assistant", shown.text))
        if shown.value is not None:
            self.shown_total = shown.value

    def drop_unanswered(self) -> None:
        """Remove a trailing user turn whose request failed (it is re-asked on resume)."""
        if self.messages and self.messages[-1].role == "user":
            self.messages.pop()
