import math

import numpy as np
import pandas as pd
import pytest

from harness.cli import compose_config
from harness.config import ModelConfig, PriceConfig
from harness.economics.costs import (
    economics,
    format_usd,
    load_price_table,
    pareto_frontier,
    resolve_price,
    usage_cost,
)
from harness.pipeline import execute
from harness.records.schema import TurnRecord, read_records
from harness.records.table import RecordTable
from providers.base import Usage
from testing.oracles import reported_model_id

CHEAP = PriceConfig(input=1.0, cached_input=0.5, output=10.0)
TABLE = {
    "gpt-4o-mini": PriceConfig(input=0.15, output=0.6),
    "vendor/model-x": PriceConfig(input=3.0, output=4.0),
    "server-id": PriceConfig(input=7.0, output=8.0),
}


def model(**options) -> ModelConfig:
    return ModelConfig.model_validate(
        {"provider": "openai_compatible", "base_url": "https://api.example.com/v1", **options}
    )


# --- price table -----------------------------------------------------------------------------


def test_packaged_table_is_valid_and_holds_hosted_models_only():
    table = load_price_table()
    assert len(table) >= 12
    assert "gpt-4o-mini" in table and "deepseek-chat" in table
    assert any("/" in name for name in table)  # router-style names are allowed
    for name, price in table.items():
        cached = price.input if price.cached_input is None else price.cached_input
        assert 0 < price.input <= price.output, name
        assert cached <= price.input, name
    assert not any(local in name for name in table for local in ("smollm", "gguf", "local"))


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("good: {input: 1, output: 2}\nbroken-model: {input: -1, output: 2}\n", "broken-model"),
        ("half-priced: {input: 1}\n", "half-priced"),
        ("typo-model: {input: 1, output: 2, ouput: 3}\n", "typo-model"),
        ("just-a-number: 3\n", "just-a-number"),
        ("- a list\n", "must map model names"),
        ("bad: [unclosed\n", "not valid YAML"),
    ],
)
def test_malformed_table_is_one_line_naming_the_entry(tmp_path, text, named):
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        load_price_table(path)
    message = str(info.value)
    assert named in message and str(path) in message
    assert "\n" not in message


# --- lookup ----------------------------------------------------------------------------------


def test_explicit_price_wins_over_the_table():
    explicit = {"input": 9.0, "output": 9.5}
    price = resolve_price(model(name="gpt-4o-mini", price=explicit), "server-id", TABLE)
    assert price == PriceConfig(**explicit)


def test_configured_name_then_reported_id_then_undated_names():
    assert resolve_price(model(name="gpt-4o-mini"), "server-id", TABLE) == TABLE["gpt-4o-mini"]
    assert resolve_price(model(name="vendor/model-x"), None, TABLE) == TABLE["vendor/model-x"]
    assert resolve_price(model(name="unlisted"), "server-id", TABLE) == TABLE["server-id"]
    dated = resolve_price(model(name="unlisted"), "gpt-4o-mini-2024-07-18", TABLE)
    assert dated == TABLE["gpt-4o-mini"]
    assert resolve_price(model(name="gpt-4o-mini-20240718"), None, TABLE) == TABLE["gpt-4o-mini"]


def test_unknown_price_is_none_never_zero():
    assert resolve_price(model(name="unlisted"), "also-unlisted", TABLE) is None
    assert resolve_price(model(name="GPT-4O-MINI"), None, TABLE) is None  # exact names only
    assert usage_cost(Usage(prompt_tokens=10, completion_tokens=5), None) is None


def test_local_models_are_not_priced_from_the_table():
    local_server = model(name="gpt-4o-mini", base_url="http://127.0.0.1:8000/v1")
    assert resolve_price(local_server, "gpt-4o-mini", TABLE) is None
    simulated = ModelConfig.model_validate({"provider": "simulated", "name": "gpt-4o-mini"})
    assert resolve_price(simulated, None, TABLE) is None
    priced = model(base_url="http://localhost:8080/v1", price={"input": 0.1, "output": 0.2})
    assert resolve_price(priced, None, TABLE) == PriceConfig(input=0.1, output=0.2)


def test_reported_model_id_is_the_most_common():
    records = [record(0, t, model_id=m) for t, m in enumerate(["a", "b", "b", None])]
    assert reported_model_id(records) == "b"
    assert reported_model_id([record(0, 0)]) is None


# --- arithmetic ------------------------------------------------------------------------------


def test_usage_cost_charges_cached_prompt_tokens_at_the_cached_rate():
    usage = Usage(prompt_tokens=1000, cached_tokens=400, completion_tokens=200)
    price = PriceConfig(input=2.0, cached_input=0.5, output=8.0)
    assert usage_cost(usage, price) == pytest.approx((600 * 2.0 + 400 * 0.5 + 200 * 8.0) / 1e6)
    without_cache_rate = PriceConfig(input=2.0, output=8.0)
    assert usage_cost(usage, without_cache_rate) == pytest.approx((1000 * 2.0 + 200 * 8.0) / 1e6)


def test_format_usd():
    assert format_usd(12.4) == "$12.40"
    assert format_usd(5) == "$5.00"
    assert format_usd(1234.5) == "$1,234.50"
    assert format_usd(0.00042) == "$0.00042"
    assert format_usd(0) == "$0.00"


# --- economics -------------------------------------------------------------------------------


def record(episode, turn, *, prompt=0, completion=0, cached=0, right=True, **extra):
    """A turn whose update was right (answer = base + delta) or wrong."""
    return TurnRecord(
        episode=episode,
        turn=turn,
        keys=["apple"],
        delta=5,
        truth=5,
        base=0,
        status=extra.pop("status", "ok"),
        answer=5 if right else 6,
        usage=Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=cached,
            estimated=extra.pop("estimated", False),
        ),
        **extra,
    )


def two_episodes() -> list[TurnRecord]:
    """2 episodes x 3 turns (K=2); episode 1's first reply came from the response cache."""
    return [
        record(0, 0, prompt=100, completion=10),
        record(0, 1, prompt=200, completion=10, cached=50),
        record(0, 2, prompt=300, completion=10, right=False),
        record(1, 0, prompt=100, completion=10, cache_hit=True),
        record(1, 1, prompt=200, completion=20, right=False, estimated=True),
        record(1, 2, prompt=300, completion=20, right=False),
    ]


SUMMARY = {
    "episodes": 2,
    "turns": 3,
    "k": 2,
    # task accuracy 1, 0.5, 0 at 2, 4, 6 steps: H_0.5 = 4 steps (2 turns)
    "task_accuracy": [1.0, 0.5, 0.0],
    "horizon": {"s": 0.5, "steps": 4.0, "turns": 2.0, "censored": False},
}


def test_economics_spend_excludes_cache_hits_but_counts_their_tokens():
    table = RecordTable.from_records(two_episodes())
    block = economics(table, SUMMARY, CHEAP, 0.5)
    spent = table.tokens_spent()
    assert spent.model_dump() == {
        "prompt_tokens": 100 + 200 + 300 + 200 + 300,
        "completion_tokens": 10 + 10 + 10 + 20 + 20,
        "reasoning_tokens": 0,
        "cached_tokens": 50,
        "total": 1100 + 70,
        "requests": 5,
        "estimated": True,
    }
    assert table.tokens_replayed() == 110
    assert block["cost_usd"] == pytest.approx(((1100 - 50) * 1.0 + 50 * 0.5 + 70 * 10.0) / 1e6)


def test_economics_rates_per_turn_episode_and_correct_step():
    block = economics(two_episodes(), SUMMARY, CHEAP, 0.5)
    all_tokens = 1170 + 110  # the cached reply counts at its original usage
    all_cost = (1775 + 200) / 1e6
    correct_steps = 3 * 2  # three turn-correct turns of K=2 keys
    assert block["tokens_per_turn"] == pytest.approx(all_tokens / 6)
    assert block["tokens_per_episode"] == pytest.approx(all_tokens / 2)
    assert block["cost_per_episode_usd"] == pytest.approx(all_cost / 2)
    assert block["correct_steps"] == correct_steps
    assert block["tokens_per_correct_step"] == pytest.approx(all_tokens / correct_steps)
    assert block["usd_per_correct_step"] == pytest.approx(all_cost / correct_steps)


def test_expected_cost_to_the_horizon_is_attempt_cost_over_success_chance():
    to_h = economics(two_episodes(), SUMMARY, CHEAP, 0.5)["to_horizon"]
    # H = 4 steps = the first 2 turns; task accuracy there is 0.5
    attempt_tokens = ((100 + 10) + (200 + 10) + (100 + 10) + (200 + 20)) / 2
    attempt_cost = (200 + (150 + 25 + 100) + 200 + (200 + 200)) / 1e6 / 2
    assert (to_h["turns"], to_h["task_steps"], to_h["success_rate"]) == (2, 4, 0.5)
    assert to_h["attempts"] == 2
    assert to_h["tokens_per_attempt"] == pytest.approx(attempt_tokens)
    assert to_h["cost_per_attempt_usd"] == pytest.approx(attempt_cost)
    assert to_h["expected_tokens"] == pytest.approx(attempt_tokens / 0.5)
    assert to_h["expected_cost_usd"] == pytest.approx(attempt_cost / 0.5)
    block = economics(two_episodes(), SUMMARY, CHEAP, 0.5)
    assert block["horizon_steps_per_usd"] == pytest.approx(4.0 / attempt_cost)


def test_interpolated_horizon_rounds_up_to_whole_turns():
    summary = {**SUMMARY, "horizon": {**SUMMARY["horizon"], "steps": 2.5}}
    to_h = economics(two_episodes(), summary, CHEAP, 0.5)["to_horizon"]
    assert (to_h["turns"], to_h["task_steps"], to_h["success_rate"]) == (2, 4, 0.5)
    summary = {**SUMMARY, "horizon": {**SUMMARY["horizon"], "steps": 1.5}}
    to_h = economics(two_episodes(), summary, CHEAP, 0.5)["to_horizon"]
    assert (to_h["turns"], to_h["success_rate"]) == (1, 1.0)
    assert to_h["expected_tokens"] == pytest.approx(to_h["tokens_per_attempt"]) == 110


def test_unknown_price_gives_tokens_but_no_dollars():
    block = economics(two_episodes(), SUMMARY, None, 0.5)
    assert RecordTable.from_records(two_episodes()).tokens_spent().total == 1170
    assert block["tokens_per_turn"] is not None
    dollars = [
        block["price"],
        block["cost_usd"],
        block["cost_per_episode_usd"],
        block["usd_per_correct_step"],
        block["to_horizon"]["cost_per_attempt_usd"],
        block["to_horizon"]["expected_cost_usd"],
        block["horizon_steps_per_usd"],
    ]
    assert dollars == [None] * len(dollars)
    assert block["to_horizon"]["expected_tokens"] is not None


def test_no_horizon_and_filled_turns():
    filled = [
        TurnRecord(
            episode=0, turn=t, keys=["a"], delta=1, truth=1, base=0, status="filled", filled=True
        )
        for t in range(2)
    ]
    summary = {**SUMMARY, "horizon": None, "task_accuracy": [None] * 3}
    records = [*filled, record(0, 2, prompt=400, completion=10)]
    block = economics(records, summary, CHEAP, 0.5)
    assert block["to_horizon"] is None and block["horizon_steps_per_usd"] is None
    assert RecordTable.from_records(records).tokens_spent().requests == 1
    assert block["tokens_per_turn"] == 410
    assert block["correct_steps"] == 2
    empty = economics([], summary, CHEAP, 0.5)
    assert RecordTable.from_records([]).tokens_spent().total == 0
    assert empty["tokens_per_turn"] is None
    assert empty["cost_usd"] == 0.0


def test_horizon_never_reached_gives_no_expected_cost():
    summary = {**SUMMARY, "task_accuracy": [0.0, 0.0, 0.0]}
    to_h = economics(two_episodes(), summary, CHEAP, 0.5)["to_horizon"]
    assert to_h["expected_tokens"] is None and to_h["expected_cost_usd"] is None


def test_a_different_s_than_the_summarys_horizon_is_refused():
    with pytest.raises(ValueError, match=r"H_0\.5"):
        economics(two_episodes(), SUMMARY, CHEAP, 0.8)


async def test_economics_of_a_real_run_matches_its_usage(tmp_path, monkeypatch):
    monkeypatch.setattr(
        "harness.pipeline.write_run_report", lambda run_dir: run_dir / "report.html"
    )
    config = compose_config(
        [
            "model=simulated",
            "task.samples=4",
            "task.turns=12",
            "run.progress=false",
            "metrics.bootstrap=0",
            "cache.enabled=off",
        ]
    )
    summary = await execute(config, tmp_path)
    records = read_records(tmp_path)
    price = PriceConfig(input=0.15, output=0.6)
    block = economics(records, summary.model_dump(), price, config.metrics.s)
    spent = summary.tokens_spent
    assert spent.prompt_tokens == sum(r.usage.prompt_tokens for r in records)
    assert spent.completion_tokens == sum(r.usage.completion_tokens for r in records)
    assert spent.estimated is True
    usage = Usage(prompt_tokens=spent.prompt_tokens, completion_tokens=spent.completion_tokens)
    assert block["cost_usd"] == pytest.approx(usage_cost(usage, price))
    assert spent.requests == len(records) == 48
    correct = sum(r.answer == r.base + r.delta for r in records)
    assert block["correct_steps"] == correct
    assert (block["to_horizon"] is None) == (summary.horizon.steps is None)


# --- Pareto frontier -------------------------------------------------------------------------


def test_pareto_frontier_keeps_the_undominated_cheapest_first():
    table = pd.DataFrame(
        {
            "run": ["a", "b", "c", "d", "e", "f", "g", "h", "i"],
            "cost_usd": [1.0, 2.0, 3.0, None, 0.5, 3.0, 1.0, 4.0, 0.2],
            "horizon_steps": [5.0, 4.0, 10.0, 100.0, None, 8.0, 5.0, 10.0, float("nan")],
        }
    )
    frontier = pareto_frontier(table)
    assert frontier["run"].tolist() == ["a", "c"]
    assert frontier.index.tolist() == [0, 2]


def test_pareto_frontier_matches_the_definition_on_random_tables():
    rng = np.random.default_rng(7)
    for _ in range(50):
        n = int(rng.integers(1, 30))
        table = pd.DataFrame(
            {"c": rng.integers(0, 8, n).astype(float), "h": rng.integers(0, 8, n).astype(float)}
        )
        frontier = pareto_frontier(table, x="c", y="h")
        points = list(zip(table["c"], table["h"], strict=True))
        dominated = {
            i
            for i, (c, h) in enumerate(points)
            if any(c2 <= c and h2 >= h and (c2, h2) != (c, h) for c2, h2 in points)
        }
        kept = set(frontier.index)
        assert kept.isdisjoint(dominated)
        distinct_undominated = {points[i] for i in range(n) if i not in dominated}
        assert {points[i] for i in kept} == distinct_undominated
        assert len(kept) == len(distinct_undominated)
        assert frontier["c"].is_monotonic_increasing
        assert not math.isnan(frontier["h"].sum())
