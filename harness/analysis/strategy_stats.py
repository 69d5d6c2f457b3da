"""What a sampling strategy did: samples per turn, red flags, vote margins, capped turns.

Counted over the latest record of every model-called turn that the provider answered (filled
turns, provider errors and context errors drew no vote). Tokens and dollars per step are in the
run's ``economics`` block, which already sums every sample's usage.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.record_table import RecordTable


def _stats(values: np.ndarray) -> dict[str, float | None]:
    if not values.size:
        return {"mean": None, "p95": None, "max": None}
    return {
        "mean": float(values.mean()),
        "p95": float(np.percentile(values, 95)),
        "max": float(values.max()),
    }


def strategy_summary(table: RecordTable, strategy: dict[str, Any], k: int) -> dict[str, Any]:
    """The ``strategy`` block of a summary.

    Args:
        table: every record of the run (the latest of each turn is used).
        strategy: the run's ``strategy`` config section (as in the manifest).
        k: keys per turn, to turn samples per turn into samples per step.
    """
    latest = table.latest()
    voted = ~latest.filled & ~latest.is_status("provider_error", "context_exceeded")
    samples = latest.n_samples[voted]
    flags = latest.red_flags[voted]
    margins = latest.vote_margin[voted]
    margins = margins[margins >= 0]
    drawn = int(samples.sum())
    per_turn = _stats(samples.astype(float))
    return {
        **strategy,
        "turns": int(voted.sum()),
        "samples": drawn,
        "samples_per_turn": per_turn,
        "samples_per_step": None if per_turn["mean"] is None else per_turn["mean"] / k,
        "red_flags": int(flags.sum()),
        "red_flag_rate": float(flags.sum() / drawn) if drawn else None,
        "capped_turns": int(latest.capped[voted].sum()),
        "vote_margin": _stats(margins.astype(float)),
    }


def strategy_columns(summary: dict[str, Any]) -> dict[str, Any]:
    """The sweep-table columns of a run's strategy and its cost per step.

    A summary written before strategies existed reads as ``single`` (or ``majority n=N``
    from its ``votes``).
    """
    block = summary.get("strategy") or {}
    votes = summary.get("votes", 1)
    name = block.get("name") or ("majority" if votes > 1 else "single")
    label = {"single": "single", "majority": f"majority n={block.get('n', votes)}"}.get(
        name, f"ahead_by_k k={block.get('k')}"
    )
    economics = summary.get("economics") or {}
    k = int(summary["k"])
    tokens_per_turn = economics.get("tokens_per_turn")
    usd_per_turn = economics.get("cost_per_turn_usd")
    return {
        "strategy": label,
        "samples_per_turn": (block.get("samples_per_turn") or {}).get("mean"),
        "red_flag_rate": block.get("red_flag_rate"),
        "tokens_per_step": None if tokens_per_turn is None else tokens_per_turn / k,
        "usd_per_step": None if usd_per_turn is None else usd_per_turn / k,
    }
