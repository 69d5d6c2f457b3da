"""One episode as a conversation: the history the model sees and how it grows.

Kept apart from the runner's scheduling so that resume can rebuild a conversation from
records with exactly the code that built it the first time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.records import TurnRecord
from providers.base import Message
from tasks.parsing import ParsedReply, parse_reply
from tasks.prompts import Mode, history_reply, user_message


@dataclass
class Conversation:
    """Messages of one episode plus the total its history currently shows."""

    system: str
    mode: Mode
    messages: list[Message] = field(default_factory=list)
    shown_total: int = 0
    """Last answer visible in the history (0 before any): the base of the next turn."""

    def __post_init__(self) -> None:
        if not self.messages:
            self.messages.append(Message("system", self.system))

    def ask(self, keys: list[str]) -> list[Message]:
        """Append the user turn and return the messages to send (a new list, same messages)."""
        self.messages.append(Message("user", user_message(keys)))
        return list(self.messages)

    def answer(self, parsed: ParsedReply) -> None:
        """Append the assistant turn as the history keeps it."""
        self.messages.append(Message("assistant", history_reply(parsed, self.mode)))
        if parsed.answer is not None:
            self.shown_total = parsed.answer

    def drop_unanswered(self) -> None:
        """Remove a trailing user turn whose request failed (it is re-asked on resume)."""
        if self.messages and self.messages[-1].role == "user":
            self.messages.pop()

    def replay(self, record: TurnRecord) -> None:
        """Rebuild one finished turn from its record (resume)."""
        self.ask(record.keys)
        self.answer(parse_reply(record.reply))
