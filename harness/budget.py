"""Spending limits checked as turns finish.

A reached limit stops *new* turns from starting; requests already in flight finish and are
recorded (they are paid for), so nothing bought is thrown away.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness.records import TurnRecord
from providers.base import Usage

CostFunction = Callable[[Usage], "float | None"]


@dataclass
class Budget:
    """Running totals of one run against its limits."""

    max_usd: float | None = None
    max_tokens: int | None = None
    cost_of: CostFunction | None = None
    spent_usd: float = 0.0
    spent_tokens: int = 0
    cost_unknown: bool = False

    def add(self, record: TurnRecord) -> None:
        """Count a finished turn (cache hits and filled turns cost nothing)."""
        if record.cache_hit or record.filled:
            return
        usage = record.usage
        self.spent_tokens += usage.prompt_tokens + usage.completion_tokens
        cost = self.cost_of(usage) if self.cost_of is not None else None
        if cost is None:
            self.cost_unknown = True
        else:
            self.spent_usd += cost

    def exhausted(self) -> str | None:
        """The limit that was reached, as the config field that set it, or None."""
        if self.max_tokens is not None and self.spent_tokens >= self.max_tokens:
            return "budget.max_tokens"
        if self.max_usd is not None and self.spent_usd >= self.max_usd:
            return "budget.max_usd"
        return None
