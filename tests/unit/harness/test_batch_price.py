"""The batch price: list rates times the seller's batch multiplier, only under model.batch=api."""

import pytest

from harness.cli import compose_config
from harness.economics.costs import batch_price_note, load_price_table, resolve_price

TABLE = load_price_table()


def price_of(*overrides: str):
    model = compose_config(list(overrides)).model
    return model, resolve_price(model, None, TABLE)


def test_openai_sells_batches_at_half_its_list_price():
    # conf/prices.yaml lists gpt-4.1-mini at 0.40 in, 0.10 cached, 1.60 out per 1M tokens.
    model, price = price_of("model=openai", "model.name=gpt-4.1-mini", "model.batch=api")
    assert (price.input, price.cached_input, price.output) == pytest.approx((0.20, 0.05, 0.80))
    assert price.batch_multiplier == 0.5
    assert batch_price_note(model, price) == "model.batch=api: batch price, 0.5 x the list price"


def test_an_interactive_run_pays_the_list_price_and_carries_no_multiplier():
    model, price = price_of("model=openai", "model.name=gpt-4.1-mini")
    assert (price.input, price.output, price.batch_multiplier) == (0.40, 1.60, None)
    assert batch_price_note(model, price) is None


def test_a_router_alias_of_an_openai_model_has_no_batch_price():
    model, price = price_of("model=openrouter", "model.name=openai/gpt-4.1-mini", "model.batch=api")
    assert (price.input, price.output, price.batch_multiplier) == (0.40, 1.60, None)
    assert "no batch price known" in batch_price_note(model, price)
