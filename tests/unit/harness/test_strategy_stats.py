"""The summary's strategy block, and the simulated executor's ``wrong_values``."""

import json
import math

import pytest

from harness.analysis.strategy_stats import strategy_summary
from harness.config import StrategyConfig
from harness.records.schema import TurnRecord
from harness.records.table import RecordTable, read_table
from providers.base import Message, Sampling
from providers.simulated import SimulatedConfig, SimulatedProvider
from tasks.parsing import parse_reply
from tasks.prompts import system_prompt


def record(episode, turn, *, status="ok", **fields):
    return TurnRecord(
        episode=episode, turn=turn, keys=["x"], delta=1, truth=1, base=0, status=status, **fields
    )


def percentile_95(values):
    """Linear interpolation between closest ranks, written out."""
    ordered = sorted(values)
    position = 0.95 * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


RECORDS = [
    record(0, 0, n_samples=3, vote_margin=3),
    record(0, 1, n_samples=7, red_flags=2, vote_margin=1, capped=True),
    record(0, 2, n_samples=4, red_flags=1, vote_margin=2),
    record(1, 0, n_samples=9, vote_margin=0, status="no_answer"),
    record(1, 1, status="provider_error", n_samples=2),  # superseded below
    record(1, 1, n_samples=5, vote_margin=5),
    record(1, 2, status="filled", filled=True),  # no vote was drawn
    record(2, 0),  # written before strategies: one sample, no margin
]


@pytest.mark.parametrize("path", ["pydantic", "arrow"])
def test_samples_red_flags_and_margins_over_the_voted_turns(tmp_path, path):
    if path == "arrow":
        lines = [r.model_dump_json() for r in RECORDS]
        old = json.loads(lines[-1])
        for name in ("n_samples", "red_flags", "vote_margin", "capped", "samples", "vote_counts"):
            del old[name]  # an old record has none of the strategy fields
        lines[-1] = json.dumps(old)
        (tmp_path / "turns.jsonl").write_text("\n".join(lines) + "\n")
        table = read_table(tmp_path)
    else:
        table = RecordTable.from_records(RECORDS)
    block = strategy_summary(table, StrategyConfig(name="ahead_by_k", k=3), k=2)
    samples = [3, 7, 4, 9, 5, 1]  # latest record of each called, answered turn
    assert block.name == "ahead_by_k" and block.label == "ahead_by_k k=3" and block.turns == 6
    assert block.samples == sum(samples)
    assert block.samples_per_turn.mean == pytest.approx(sum(samples) / 6)
    assert block.samples_per_turn.p95 == pytest.approx(percentile_95(samples))
    assert block.samples_per_turn.max == 9
    assert block.samples_per_step == pytest.approx(sum(samples) / 6 / 2)
    assert block.red_flags == 3 and block.red_flag_rate == pytest.approx(3 / 29)
    assert block.capped_turns == 1
    assert block.vote_margin.mean == pytest.approx((3 + 1 + 2 + 0 + 5) / 5)


def test_no_voted_turn_gives_empty_statistics_not_zeros():
    block = strategy_summary(RecordTable.from_records([]), StrategyConfig(), k=1)
    assert block.samples_per_turn.mean is None and block.samples_per_turn.p95 is None
    assert block.red_flag_rate is None and block.samples_per_step is None


def conversation(dictionary, keys):
    return [Message("system", system_prompt(dictionary, "direct", 1)), Message("user", keys)]


async def answers(config, messages, seeds):
    provider = SimulatedProvider(config)
    replies = [await provider.chat(messages, Sampling(seed=s)) for s in seeds]
    return [parse_reply(r.content).answer for r in replies]


async def test_one_wrong_value_makes_every_wrong_sample_agree():
    dictionary = {"apple": 5, "bread": -3}
    messages = conversation(dictionary, "apple")
    seeds = range(400)
    two = await answers(SimulatedConfig(p=0.5, wrong_values=1), messages, seeds)
    assert set(two) - {5} and len(set(two) - {5}) == 1  # right, or the one wrong value
    assert two.count(5) / len(two) == pytest.approx(0.5, abs=0.08)
    many = await answers(SimulatedConfig(p=0.5), messages, seeds)
    assert len(set(many) - {5}) > 5
    bread = conversation(dictionary, "bread")
    other = await answers(SimulatedConfig(p=0.5, wrong_values=1), bread, seeds)
    offsets = {a - 5 for a in two if a != 5}, {a + 3 for a in other if a != -3}
    assert offsets[0] != offsets[1]  # each conversation has its own wrong value


async def test_three_wrong_values_give_three_wrong_answers():
    messages = conversation({"apple": 5}, "apple")
    got = await answers(SimulatedConfig(p=0.0, wrong_values=3), messages, range(300))
    assert len(set(got)) == 3 and 5 not in got
