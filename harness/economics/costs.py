"""Token economics: what a run spent, and what a model's horizon costs in tokens and dollars.

Accuracy alone does not tell a user which model to run: a cheap model that needs several
attempts per solved task can cost more than an expensive one that succeeds first time. The
expected cost of one success at length H is the cost of an attempt divided by the chance an
attempt succeeds, and that is what :func:`economics` reports next to the horizon.

Two kinds of figures are kept apart:

* *spend* (``cost_usd`` here, ``tokens_spent`` in the summary): what this run paid. A reply
  served by the harness's response cache cost nothing, so its tokens are only counted, as
  ``tokens_replayed``.
* *rates* (per turn, per episode, per correct step, to the horizon): what running this model on
  this task costs. They count a replayed reply at the usage of the request that first produced
  it, so a run answered from the cache reports the same economics as the run that filled it.

A model without a known price has an unknown cost (``None``), never a cost of 0.
"""

from __future__ import annotations

import math
import re
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import yaml
from pydantic import ValidationError

from harness.config import ModelConfig, PriceConfig, describe_validation_error
from harness.records.schema import TurnRecord
from harness.records.table import RecordTable
from providers.base import Usage

PER_MILLION = 1_000_000
"""Prices are quoted per million tokens."""

PRICE_FILE = "prices.yaml"
"""The price table shipped in the ``conf`` package."""

LOCAL_PROVIDERS = frozenset({"simulated", "llama_cpp", "hf"})
"""Providers that run on this machine: no list price applies to them."""

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})
_DATE_SUFFIX = re.compile(r"-(?:\d{8}|\d{4}-\d{2}-\d{2})$")


def load_price_table(path: Path | None = None) -> dict[str, PriceConfig]:
    """Read a price table (model name -> prices); the packaged ``conf/prices.yaml`` by default.

    Raises:
        ValueError: one line naming the file and the model whose entry is malformed.
    """
    if path is None:
        where = f"conf/{PRICE_FILE}"
        text = files("conf").joinpath(PRICE_FILE).read_text(encoding="utf-8")
    else:
        where = str(path)
        text = Path(path).read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{where}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: must map model names to prices (got {type(raw).__name__})")
    table: dict[str, PriceConfig] = {}
    for name, entry in raw.items():
        if not isinstance(name, str):
            raise ValueError(f"{where}: model name {name!r} must be a string")
        try:
            table[name] = PriceConfig.model_validate(entry)
        except ValidationError as exc:
            reason = describe_validation_error(exc, model=PriceConfig)
            raise ValueError(f"{where}: {name}: {reason}") from None
    return table


def is_local(provider: str, options: dict[str, Any]) -> bool:
    """True for a model served from this machine (in-process, or a server on a loopback URL).

    A local model may well carry a hosted model's name; pricing it at the hosted rate would
    invent a cost, so such models are only priced through an explicit ``model.price``.
    """
    if provider in LOCAL_PROVIDERS:
        return True
    base_url = options.get("base_url")
    return isinstance(base_url, str) and urlsplit(base_url).hostname in _LOOPBACK_HOSTS


def resolve_price(
    model: ModelConfig, model_id: str | None, table: dict[str, PriceConfig]
) -> PriceConfig | None:
    """The prices of a run's model, or None when they are unknown.

    Precedence: an explicit ``model.price``; then the table entry for the configured
    ``model.name``; then the one for the model id the server reported; then both names again
    without a trailing date (a dated snapshot priced as its alias). Local models (see
    :func:`is_local`) are never looked up.
    """
    return batch_price(_listed_price(model, model_id, table), model.batch == "api")


def _listed_price(
    model: ModelConfig, model_id: str | None, table: dict[str, PriceConfig]
) -> PriceConfig | None:
    if model.price is not None:
        return model.price
    options = model.provider_options()
    if is_local(model.provider, options):
        return None
    names = [n for n in (options.get("name"), model_id) if isinstance(n, str) and n]
    for candidate in [*names, *(_DATE_SUFFIX.sub("", n) for n in names)]:
        if candidate in table:
            return table[candidate]
    return None


def batch_price(price: PriceConfig | None, batch_api: bool) -> PriceConfig | None:
    """The price a run pays: the list price, or under ``model.batch=api`` the batch price.

    The batch price is every rate times ``price.batch_multiplier``, which the result keeps;
    an interactive run's price has no multiplier, so a price with one is always a batch
    price whose rates are already multiplied. A batch run of a model whose seller's
    multiplier is unknown is priced at the list price (an upper bound).
    """
    if price is None:
        return None
    share = price.batch_multiplier
    if not batch_api or share is None:
        return price.model_copy(update={"batch_multiplier": None})
    cached = None if price.cached_input is None else price.cached_input * share
    return PriceConfig(
        input=price.input * share,
        cached_input=cached,
        output=price.output * share,
        batch_multiplier=share,
    )


def batch_price_note(model: ModelConfig, price: PriceConfig | None) -> str | None:
    """What a reader of a batch run's cost should know about its price (None otherwise)."""
    if model.batch != "api" or price is None:
        return None
    if price.batch_multiplier is None:
        return (
            "model.batch=api: no batch price known for this model (price.batch_multiplier), "
            "costed at the list price"
        )
    return f"model.batch=api: batch price, {price.batch_multiplier:g} x the list price"


def _cost(prompt: Any, cached: Any, completion: Any, price: PriceConfig) -> Any:
    """Dollars for token counts (scalars or arrays alike): the one pricing formula."""
    cached = np.minimum(cached, prompt)
    cached_rate = price.input if price.cached_input is None else price.cached_input
    return (
        (prompt - cached) * price.input + cached * cached_rate + completion * price.output
    ) / PER_MILLION


def usage_cost(usage: Usage, price: PriceConfig | None) -> float | None:
    """Dollars of one request's usage; None when the price is unknown.

    Uncached prompt tokens are charged at ``input``, cached ones at ``cached_input`` (``input``
    when absent), completion tokens (reasoning included) at ``output``.
    """
    if price is None:
        return None
    return float(_cost(usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens, price))


def format_usd(amount: float) -> str:
    """Dollars for people: cents for ordinary amounts, enough digits for tiny ones."""
    if amount == 0 or abs(amount) >= 0.01:
        return f"${amount:,.2f}"
    return f"${amount:.2g}" if abs(amount) < 1e-6 else f"${amount:.6f}".rstrip("0")


def _columns(table: RecordTable) -> dict[str, np.ndarray]:
    """The records' counts under the names the formulas below use."""
    return {
        "episode": table.episode,
        "turn": table.turn,
        "prompt": table.prompt_tokens,
        "cached": table.cached_tokens,
        "completion": table.completion_tokens,
        "reasoning": table.reasoning_tokens,
        "cache_hit": table.cache_hit,
        "filled": table.filled,
        "estimated": table.estimated,
    }


def _distinct(values: np.ndarray) -> int:
    """How many different non-negative integers ``values`` holds.

    A counting pass: ``np.unique`` sorts or hashes, a third of a second per call at a million
    records.
    """
    return int(np.count_nonzero(np.bincount(values))) if values.size else 0


def _ratio(numerator: float | None, denominator: float) -> float | None:
    if numerator is None or not denominator:
        return None
    return float(numerator / denominator)


def economics(
    records: list[TurnRecord] | RecordTable,
    summary: dict[str, Any],
    price: PriceConfig | None,
    s: float,
) -> dict[str, Any]:
    """The ``economics`` block of a run's summary.

    Args:
        records: every record of the run, superseded attempts included (they were paid for),
            as records or as the run's :class:`~harness.records.table.RecordTable`.
        summary: the run's summary (reads ``episodes``, ``turns``, ``k``, ``horizon`` and
            ``task_accuracy``).
        price: the model's prices, or None when unknown (every dollar figure is then None).
        s: success threshold of the horizon; must be the one the summary's horizon used.

    Returns:
        A JSON-ready dict:

        * ``cost_usd``: what this run paid (replies from the response cache cost nothing);
          the tokens it paid for are the summary's ``tokens_spent``
          (:meth:`~harness.records.table.RecordTable.tokens_spent`), the replayed ones its
          ``tokens_replayed``.
        * ``tokens_per_turn`` and ``cost_per_turn_usd``: per model-called turn (filled turns
          are not calls), every sample of a voting strategy included.
        * ``tokens_per_episode`` and ``cost_per_episode_usd``: means over episodes that
          called the model.
        * ``correct_steps``: K times the number of turn-correct turns (the model applied the
          whole turn's update to the total its history showed); ``tokens_per_correct_step``
          and ``usd_per_correct_step`` divide all tokens and dollars by it, so wrong turns are
          paid for by the right ones.
        * ``to_horizon``: the cost of reaching the horizon H = H_s. An attempt is an episode's
          first ``turns = ceil(H / K)`` turns (``task_steps`` = turns x K >= H); the tokens
          per attempt are the mean over episodes of what they spent in those turns (an episode
          that ended earlier counts what it spent); the success chance is task accuracy after
          those turns. Expected tokens (or dollars) to complete one such task are then tokens
          (dollars) per attempt / success chance, the expected number of attempts being
          1 / success chance. None without a horizon (e.g. rewritten histories).
        * ``horizon_steps_per_usd``: H / dollars per attempt.
    """
    table = records if isinstance(records, RecordTable) else RecordTable.from_records(records)
    c = _columns(table)
    called = ~c["filled"]
    spent = called & ~c["cache_hit"]
    tokens = c["prompt"] + c["completion"]
    costs = None if price is None else _cost(c["prompt"], c["cached"], c["completion"], price)

    def total(values: np.ndarray | None, mask: np.ndarray) -> float | None:
        return None if values is None else float(values[mask].sum())

    turns, k = int(summary["turns"]), int(summary["k"])
    turns_called = _distinct(c["episode"][called] * turns + c["turn"][called])
    episodes_called = _distinct(c["episode"][called])
    latest = table.latest()
    in_run = (latest.episode < int(summary["episodes"])) & (latest.turn < turns)
    correct_steps = int((latest.turn_correct() & in_run).sum()) * k
    all_tokens = total(tokens, called)
    all_cost = total(costs, called)
    to_horizon = _to_horizon(c, called, tokens, costs, summary, s)
    attempt_cost = None if to_horizon is None else to_horizon["cost_per_attempt_usd"]
    return {
        "price": None if price is None else price.model_dump(),
        "cost_usd": total(costs, spent),
        "tokens_per_turn": _ratio(all_tokens, turns_called),
        "cost_per_turn_usd": _ratio(all_cost, turns_called),
        "tokens_per_episode": _ratio(all_tokens, episodes_called),
        "cost_per_episode_usd": _ratio(all_cost, episodes_called),
        "correct_steps": correct_steps,
        "tokens_per_correct_step": _ratio(all_tokens, correct_steps),
        "usd_per_correct_step": _ratio(all_cost, correct_steps),
        "to_horizon": to_horizon,
        "horizon_steps_per_usd": None
        if to_horizon is None
        else _ratio(to_horizon["steps"], attempt_cost or 0.0),
    }


def _to_horizon(
    c: dict[str, np.ndarray],
    called: np.ndarray,
    tokens: np.ndarray,
    costs: np.ndarray | None,
    summary: dict[str, Any],
    s: float,
) -> dict[str, Any] | None:
    """See ``to_horizon`` in :func:`economics`."""
    horizon = summary.get("horizon")
    if not horizon or horizon.get("steps") is None:
        return None
    if not math.isclose(horizon["s"], s):
        raise ValueError(f"economics: s={s} but the summary's horizon is H_{horizon['s']}")
    k, turns = int(summary["k"]), int(summary["turns"])
    steps = float(horizon["steps"])
    attempt_turns = min(turns, max(1, math.ceil(steps / k - 1e-9)))
    in_attempt = called & (c["turn"] < attempt_turns)
    attempts = _distinct(c["episode"][in_attempt])
    if attempts == 0:
        return None
    success = summary["task_accuracy"][attempt_turns - 1]
    tokens_per_attempt = float(tokens[in_attempt].sum()) / attempts
    cost_per_attempt = None if costs is None else float(costs[in_attempt].sum()) / attempts
    return {
        "s": s,
        "steps": steps,
        "censored": bool(horizon.get("censored", False)),
        "turns": attempt_turns,
        "task_steps": attempt_turns * k,
        "success_rate": success,
        "attempts": attempts,
        "tokens_per_attempt": tokens_per_attempt,
        "cost_per_attempt_usd": cost_per_attempt,
        "expected_tokens": _ratio(tokens_per_attempt, success or 0.0),
        "expected_cost_usd": _ratio(cost_per_attempt, success or 0.0),
    }


def pareto_frontier(
    table: pd.DataFrame, x: str = "cost_usd", y: str = "horizon_steps"
) -> pd.DataFrame:
    """The rows no other row beats on both cost and horizon, cheapest first.

    A row is kept when every cheaper-or-equal row has a strictly shorter horizon. Rows whose
    cost or horizon is unknown (None, NaN) are left out, as are exact duplicates of a kept
    row's (cost, horizon) after the first. The original index is kept, to find the runs.
    """
    xs = pd.to_numeric(table[x], errors="coerce")
    ys = pd.to_numeric(table[y], errors="coerce")
    known = np.isfinite(xs) & np.isfinite(ys)
    order = pd.DataFrame({"x": xs[known], "y": ys[known]}).sort_values(
        ["x", "y"], ascending=[True, False], kind="mergesort"
    )
    best_before = order["y"].cummax().shift(fill_value=-np.inf)
    return table.loc[order.index[(order["y"] > best_before).to_numpy()]]
