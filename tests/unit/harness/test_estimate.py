import asyncio
import re

import numpy as np
import pytest

from harness.cli import compose_config
from harness.config import BudgetConfig, PriceConfig
from harness.economics.estimate import (
    THINKING_TOKENS_PER_KEY,
    estimate_run,
    exceeds_budget,
    format_estimate,
)
from harness.economics.token_counts import MessageTokens
from harness.pipeline import execute, make_task_set
from harness.records.schema import read_records
from harness.run.history import HistoryPolicy
from harness.run.runner import Runner
from providers.simulated import SimulatedConfig, SimulatedProvider
from testing.scripted import ScriptedProvider

PRICE = PriceConfig(input=0.15, output=0.6)
SMALL = [
    "model=simulated",
    "task.samples=3",
    "task.turns=30",
    "run.progress=false",
    "metrics.bootstrap=0",
    "cache.enabled=off",
]


def skip_report(run_dir):
    """The HTML report is not under test here (and needs matplotlib time)."""
    return run_dir / "report.html"


def estimate(overrides, price=PRICE):
    config = compose_config([*SMALL, *overrides])
    return config, estimate_run(config, make_task_set(config), price)


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["history.window=2"],
        ["history=healed", "history.target_turn=20"],
        ["history=injected", "history.rate=0.5", "history.window=5", "history.target_turn=10"],
        ["task.k=3", "strategy=majority", "strategy.n=3"],
        ["task.mode=cot", "task.k=2", "history=injected", "history.rate=0.5"],
        ["task.mode=cot", "task.k=2", "history=healed", "history.target_turn=20"],
    ],
    ids=[
        "full",
        "window2",
        "target_turn",
        "injected_window_target",
        "k3_majority3",
        "cot_injected",
        "cot_healed_target",
    ],
)
async def test_estimate_agrees_with_the_usage_of_a_real_run(tmp_path, monkeypatch, overrides):
    """Same requests, same text: the simulated provider counts characters / 4 like the
    estimate, so this checks only that the estimate rebuilds what the runner sends (request
    count, history, window, filled turns, votes). Real token counts are compared in
    test_estimate_real_tokens.py."""
    monkeypatch.setattr("harness.pipeline.write_run_report", skip_report)
    config, predicted = estimate(overrides)
    await execute(config, tmp_path)
    called = [r for r in read_records(tmp_path) if not r.filled]
    prompt = sum(r.usage.prompt_tokens for r in called)
    completion = sum(r.usage.completion_tokens for r in called)
    samples = config.strategy.n if config.strategy.name == "majority" else 1
    assert predicted.requests == sum(r.n_samples for r in called) == len(called) * samples
    assert predicted.prompt_tokens == pytest.approx(prompt, rel=0.15)
    assert predicted.completion_tokens == pytest.approx(completion, rel=0.15)
    assert predicted.completion_tokens_max == len(called) * config.model.max_tokens * samples


async def test_ahead_by_k_estimate_spans_k_to_max_samples_per_turn(tmp_path, monkeypatch):
    """Expected figures assume k agreeing samples (a lower bound); the _max ones the cap."""
    monkeypatch.setattr("harness.pipeline.write_run_report", skip_report)
    config, predicted = estimate(["strategy=ahead_by_k", "strategy.k=2", "model.p=0.7"])
    await execute(config, tmp_path)
    called = [r for r in read_records(tmp_path) if not r.filled]
    prompt = sum(r.usage.prompt_tokens for r in called)
    assert predicted.samples_per_turn == (2, config.strategy.max_samples)
    assert predicted.requests == 2 * len(called) < sum(r.n_samples for r in called)
    assert predicted.prompt_tokens < prompt < predicted.prompt_tokens_max
    assert any("at most 32" in note for note in predicted.notes)


def test_full_history_grows_quadratically_and_a_window_linearly():
    def prompt_tokens(turns, *extra):
        return estimate(["task.samples=1", f"task.turns={turns}", *extra])[1].prompt_tokens

    full = prompt_tokens(4000) / prompt_tokens(2000)
    assert 3.5 < full < 4.0  # the constant system message keeps it just under 4
    windowed = prompt_tokens(4000, "history.window=2") / prompt_tokens(2000, "history.window=2")
    assert windowed == pytest.approx(2.0, rel=0.01)


def test_per_turn_prompts_grow_by_one_exchange_and_skip_filled_turns():
    _, full = estimate([])
    assert (np.diff(full.prompt_tokens_per_turn) > 0).all()
    assert full.prompt_tokens_per_turn[0] > full.system_prompt_tokens
    _, target = estimate(["history=healed", "history.target_turn=20"])
    assert target.requests == 3 * (30 - 19)
    assert target.prompt_tokens_per_turn[:19] == (0.0,) * 19
    assert target.prompt_tokens_per_turn[19] == pytest.approx(full.prompt_tokens_per_turn[19])


def test_every_vote_is_a_request_that_resends_the_prompt():
    _, one = estimate([])
    _, five = estimate(["strategy=majority", "strategy.n=5"])
    assert five.requests == 5 * one.requests
    assert five.prompt_tokens == pytest.approx(5 * one.prompt_tokens, abs=5)
    assert five.completion_tokens == pytest.approx(5 * one.completion_tokens, abs=5)
    assert five.completion_tokens_max == 5 * one.completion_tokens_max
    assert five.cost_usd > one.cost_usd


def test_thinking_adds_the_documented_guess_per_key():
    _, direct = estimate(["task.k=1"])
    _, thinking = estimate(["task.k=1", "task.mode=thinking"])
    extra = thinking.completion_tokens - direct.completion_tokens
    assert extra == pytest.approx(direct.requests * THINKING_TOKENS_PER_KEY, abs=1)
    assert any("thinking" in note for note in thinking.notes)


def test_cot_reply_is_sized_like_the_worked_example():
    config = compose_config([*SMALL, "task.samples=1", "task.turns=1", "task.k=2", "task.mode=cot"])
    task_set = make_task_set(config)
    words = task_set.turn_keys(0, 0)
    first, second = (task_set.dictionary[w] for w in words)
    reply = (
        f"0 + {words[0]} ({first}) = {first}\n"
        f"{first} + {words[1]} ({second}) = {first + second}\n"
        f"<answer>{first + second}</answer>"
    )
    predicted = estimate_run(config, task_set, None)
    assert predicted.completion_tokens == round(len(reply) / 4)


def test_cost_is_priced_tokens_and_unknown_without_a_price():
    _, priced = estimate([])
    assert priced.cost_usd == pytest.approx(
        (priced.prompt_tokens * 0.15 + priced.completion_tokens * 0.6) / 1e6
    )
    assert priced.cost_usd_max == pytest.approx(
        (priced.prompt_tokens * 0.15 + priced.completion_tokens_max * 0.6) / 1e6
    )
    _, unpriced = estimate([], price=None)
    assert unpriced.cost_usd is None and unpriced.cost_usd_max is None
    assert unpriced.prompt_tokens == priced.prompt_tokens
    assert "unknown price" in format_estimate(unpriced, BudgetConfig())


def test_budget_refusal_names_the_field_and_the_amounts():
    expensive = PriceConfig(input=3, output=15)
    _, est = estimate(["task.samples=1000", "task.turns=200"], price=expensive)
    assert est.cost_usd > 5
    reason = exceeds_budget(est, BudgetConfig(max_usd=5.0))
    assert reason.startswith("budget.max_usd: ")
    assert "$5.00" in reason and f"${est.cost_usd:,.2f}" in reason
    assert "raise budget.max_usd" in reason and "\n" not in reason
    assert exceeds_budget(est, BudgetConfig(max_usd=est.cost_usd * 2)) is None
    tokens = exceeds_budget(est, BudgetConfig(max_tokens=1000))
    assert tokens.startswith("budget.max_tokens: ") and "1,000" in tokens
    assert "OVER: budget.max_usd" in format_estimate(est, BudgetConfig(max_usd=5.0))
    assert "within budget.max_usd=$" in format_estimate(est, BudgetConfig(max_usd=1e6))


def test_budget_in_dollars_cannot_be_checked_without_a_price():
    _, est = estimate([], price=None)
    assert exceeds_budget(est, BudgetConfig(max_usd=0.01)) is None
    assert "cannot be checked" in format_estimate(est, BudgetConfig(max_usd=0.01))


def test_notes_say_what_could_not_be_predicted():
    _, stopping = estimate(["stop.after_failure=true"])
    assert any("upper bound" in note for note in stopping.notes)
    _, cut = estimate(["task.k=10", "task.mode=cot", "model.max_tokens=16"])
    assert any("model.max_tokens=16" in note for note in cut.notes)
    assert cut.completion_tokens <= cut.requests * 16
    config = compose_config(SMALL)
    with pytest.raises(ValueError, match="chars_per_token"):
        estimate_run(config, make_task_set(config), None, chars_per_token=0)


def fake_count(messages) -> int:
    """An additive tokenizer unlike characters / 4: a word is one token, a number one token
    per three digits, other visible characters one each; 4 template tokens per message and 3
    for the generation prompt. Written independently of the estimate's parts."""

    def tokens(text: str) -> int:
        parts = re.findall(r"[A-Za-z]+|\d+|\S", text)
        return sum(-(-len(p) // 3) if p.isdigit() else 1 for p in parts)

    return 3 + sum(4 + tokens(m.content) for m in messages)


@pytest.mark.parametrize(
    "overrides",
    [[], ["history.window=3"], ["task.k=3"], ["history=healed", "history.target_turn=5"]],
    ids=["full", "window3", "k3", "target_turn"],
)
def test_counted_parts_add_up_to_an_additive_tokenizers_real_count(tmp_path, overrides):
    """With a tokenizer whose counts add up over words, numbers and messages, counting each
    part once must give the count of every request the runner sends, exactly (rounding
    aside); per-character rates could not (totals of 1 to 3 digits are one token each)."""
    config = compose_config([*SMALL, "model.p=1.0", "task.turns=12", *overrides])
    task_set = make_task_set(config)
    provider = ScriptedProvider(SimulatedProvider(SimulatedConfig(p=1.0)).chat)
    runner = Runner(
        task_set=task_set,
        provider=provider,
        sampling=config.model.sampling(),
        policy=HistoryPolicy(
            source=config.history.source, seed=config.run.seed, mode=config.task.mode
        ),
        run_dir=tmp_path,
        concurrency=1,
        window=config.history.window,
        first_called_turn=(config.history.target_turn or 1) - 1,
    )
    asyncio.run(runner.run())
    real = sum(fake_count(messages) for messages in provider.requests)
    tokens = MessageTokens.counted(fake_count, task_set, config.task.mode, "fake")
    predicted = estimate_run(config, task_set, None, tokens=tokens)
    assert predicted.requests == len(provider.requests)
    assert predicted.prompt_tokens == pytest.approx(real, abs=0.5 * len(provider.requests))
