"""What a sampling strategy did: samples per turn, red flags, vote margins, capped turns.

Counted over the latest record of every model-called turn that the provider answered (filled
turns, provider errors and context errors drew no vote). Tokens and dollars per step are in the
run's ``economics`` block, which already sums every sample's usage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from harness.config import StrategyConfig
from harness.records.table import RecordTable

if TYPE_CHECKING:
    from harness.analysis.run_summary import RunSummary


class Spread(BaseModel):
    """Mean, 95th percentile and maximum of a per-turn count (None when nothing was counted)."""

    model_config = ConfigDict(extra="forbid")

    mean: float | None = None
    """Mean over the turns."""
    p95: float | None = None
    """95th percentile (linear interpolation)."""
    max: float | None = None
    """Largest value."""


class StrategySummary(StrategyConfig):
    """The run's strategy (its config fields; ``label`` names it) and what it drew."""

    turns: int
    """Turns that drew votes (the latest record of each answered, model-called turn)."""
    samples: int
    """Samples drawn by those turns, red-flagged ones included."""
    samples_per_turn: Spread
    """Samples per turn."""
    samples_per_step: float | None
    """Mean samples per turn over K."""
    red_flags: int
    """Samples discarded before voting."""
    red_flag_rate: float | None
    """``red_flags`` over ``samples``."""
    capped_turns: int
    """Turns that reached ``max_samples`` undecided (plurality answer taken)."""
    vote_margin: Spread
    """Winner's votes minus the runner-up's, over turns with a recorded margin."""


def _spread(values: np.ndarray) -> Spread:
    if not values.size:
        return Spread()
    return Spread(
        mean=float(values.mean()), p95=float(np.percentile(values, 95)), max=float(values.max())
    )


def strategy_summary(table: RecordTable, strategy: StrategyConfig, k: int) -> StrategySummary:
    """The ``strategy`` block of a summary.

    Args:
        table: every record of the run (the latest of each turn is used).
        strategy: the run's strategy.
        k: keys per turn, to turn samples per turn into samples per step.
    """
    latest = table.latest()
    voted = ~latest.filled & ~latest.is_status("provider_error", "context_exceeded")
    samples = latest.n_samples[voted]
    flags = latest.red_flags[voted]
    margins = latest.vote_margin[voted]
    drawn = int(samples.sum())
    per_turn = _spread(samples.astype(float))
    return StrategySummary(
        **strategy.model_dump(),
        turns=int(voted.sum()),
        samples=drawn,
        samples_per_turn=per_turn,
        samples_per_step=None if per_turn.mean is None else per_turn.mean / k,
        red_flags=int(flags.sum()),
        red_flag_rate=float(flags.sum() / drawn) if drawn else None,
        capped_turns=int(latest.capped[voted].sum()),
        vote_margin=_spread(margins[margins >= 0].astype(float)),
    )


def run_strategy(config: dict[str, Any]) -> StrategyConfig:
    """A run's strategy from its config; a config from before strategies reads ``run.votes``."""
    votes = config.get("run", {}).get("votes", 1)
    raw = config.get("strategy") or ({"name": "majority", "n": votes} if votes > 1 else {})
    return StrategyConfig.model_validate(raw)


def strategy_columns(summary: RunSummary) -> dict[str, Any]:
    """The sweep-table columns of a run's strategy and its cost per step."""
    block = summary.strategy
    label = (
        block.label
        if block
        else ("single" if summary.votes == 1 else f"majority n={summary.votes}")
    )
    economics = summary.economics
    tokens_per_turn = economics.tokens_per_turn if economics else None
    usd_per_turn = economics.cost_per_turn_usd if economics else None
    return {
        "strategy": label,
        "samples_per_turn": block.samples_per_turn.mean if block else None,
        "red_flag_rate": block.red_flag_rate if block else None,
        "tokens_per_step": None if tokens_per_turn is None else tokens_per_turn / summary.k,
        "usd_per_step": None if usd_per_turn is None else usd_per_turn / summary.k,
    }
