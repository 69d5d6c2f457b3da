"""Spending limits checked as turns finish: of one run, and of every job of a sweep together.

A reached limit stops *new* turns from starting; requests already in flight finish and are
recorded (they are paid for), so nothing bought is thrown away. What a run spent is what its
``turns.jsonl`` holds, earlier sessions included, so a resumed run cannot spend its budget a
second time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.config import BudgetConfig
from harness.files import atomic_write_json, read_json
from harness.records.schema import TurnRecord
from providers.base import Usage

CostFunction = Callable[[Usage], "float | None"]

LEDGER_DIR = ".budget"
"""Folder of a sweep directory where its jobs record what they spent."""
LEDGER_SECONDS = 1.0
"""A job rewrites its own ledger file, and reads the others', at most this often."""


@dataclass
class SweepLedger:
    """What every job of one sweep has spent, shared through small files.

    Each job owns one file (``<job>.json``, its totals so far) and replaces it atomically,
    so no file is ever written by two processes and nothing needs a lock; jobs on other
    machines (SLURM) see it through the shared sweep directory. A job learns of the others'
    spending at most :data:`LEDGER_SECONDS` late, so a sweep may overshoot its limit by about
    that much spending per job in flight.
    """

    folder: Path
    job: str
    """The job's run-directory name, unique within its sweep."""
    _others: tuple[int, float] = (0, 0.0)
    _read_at: float = -math.inf
    _written_at: float = -math.inf

    def publish(self, tokens: int, usd: float, *, force: bool = False) -> None:
        """Record this job's totals (throttled unless ``force``)."""
        now = time.monotonic()
        if not force and now - self._written_at < LEDGER_SECONDS:
            return
        self._written_at = now
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.folder / f"{self.job}.json", {"tokens": tokens, "usd": usd})

    def others(self) -> tuple[int, float]:
        """Tokens and dollars spent by the sweep's other jobs (re-read at most once a second)."""
        now = time.monotonic()
        if now - self._read_at >= LEDGER_SECONDS:
            self._read_at = now
            tokens, usd = 0, 0.0
            for path in self.folder.glob("*.json"):
                if path.stem == self.job:
                    continue
                try:
                    entry = read_json(path)
                    tokens, usd = tokens + int(entry["tokens"]), usd + float(entry["usd"])
                except (OSError, ValueError, KeyError, TypeError):
                    continue  # a file being replaced right now: counted at the next read
            self._others = (tokens, usd)
        return self._others


@dataclass
class Budget:
    """The run's one running tally of spending, against its own limits and its sweep's.

    The progress line reads this tally too, so what it shows is what the limits check.
    """

    limits: BudgetConfig = field(default_factory=BudgetConfig)
    """``budget.*`` of the config."""
    cost_of: CostFunction | None = None
    """Dollars of one request's usage at the run's price (None: unknown)."""
    ledger: SweepLedger | None = None
    """Where the sweep's jobs share their spending; None outside a sweep (the sweep limits
    then apply to this run alone)."""
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
        if self.ledger is not None:
            self.ledger.publish(self.spent_tokens, self.spent_usd)

    def sync(self) -> None:
        """Publish this run's totals to the sweep now (at the start and the end of a run)."""
        if self.ledger is not None:
            self.ledger.publish(self.spent_tokens, self.spent_usd, force=True)

    def exhausted(self) -> str | None:
        """The limit that was reached, as the config field that set it, or None."""
        limits = self.limits
        if limits.max_tokens is not None and self.spent_tokens >= limits.max_tokens:
            return "budget.max_tokens"
        if limits.max_usd is not None and self.spent_usd >= limits.max_usd:
            return "budget.max_usd"
        if limits.sweep_max_tokens is None and limits.sweep_max_usd is None:
            return None
        other_tokens, other_usd = self.ledger.others() if self.ledger else (0, 0.0)
        if (
            limits.sweep_max_tokens is not None
            and self.spent_tokens + other_tokens >= limits.sweep_max_tokens
        ):
            return "budget.sweep_max_tokens"
        if limits.sweep_max_usd is not None and self.spent_usd + other_usd >= limits.sweep_max_usd:
            return "budget.sweep_max_usd"
        return None
