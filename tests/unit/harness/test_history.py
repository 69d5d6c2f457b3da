import numpy as np
import pytest

from harness.records.schema import read_records
from harness.run.history import HistoryPolicy, injected_offset
from harness.run.runner import Runner
from harness.run.voting import majority_answer
from providers.base import ChatResult, Sampling
from providers.simulated import SimulatedConfig, SimulatedProvider
from tasks.generate import generate_task_set
from tasks.parsing import format_answer, parse_reply
from testing.scripted import ScriptedProvider


def always(value):
    return lambda messages, sampling: ChatResult(content=format_answer(value))


def runner_for(tmp_path, provider, *, samples=2, turns=6, k=1, **kwargs):
    task_set = generate_task_set(samples=samples, turns=turns, k=k, seed=4)
    return Runner(
        task_set=task_set,
        provider=provider,
        sampling=kwargs.pop("sampling", Sampling()),
        run_dir=tmp_path,
        concurrency=4,
        **kwargs,
    ), task_set


def test_injected_offsets_are_never_zero_and_hit_at_the_rate():
    offsets = [injected_offset(1, e, t, 0.3, 10) for e in range(50) for t in range(100)]
    hits = [o for o in offsets if o != 0]
    assert all(1 <= abs(o) <= 10 for o in hits)
    assert len(hits) / len(offsets) == pytest.approx(0.3, abs=0.03)
    assert {o for o in hits} >= {-10, -1, 1, 10}
    assert all(injected_offset(1, 0, t, 1.0, 3) != 0 for t in range(200))


async def test_healed_history_shows_the_truth_whatever_the_model_says(tmp_path):
    provider = ScriptedProvider(always(12345))
    runner, task_set = runner_for(tmp_path, provider, policy=HistoryPolicy(source="healed"))
    await runner.run()
    last = provider.requests[-1]
    shown = [parse_reply(m.content).answer for m in last if m.role == "assistant"]
    episode = next(e for e in range(2) if task_set.turn_keys(e, 0)[0] == last[1].content)
    assert shown == task_set.turn_truth[episode, : len(shown)].tolist()
    for record in read_records(tmp_path):
        assert record.shown == record.truth and record.base == (
            0 if record.turn == 0 else int(task_set.turn_truth[record.episode, record.turn - 1])
        )


async def test_target_turn_fills_earlier_turns_without_calls(tmp_path):
    provider = ScriptedProvider(always(0))
    runner, _task_set = runner_for(
        tmp_path,
        provider,
        turns=8,
        policy=HistoryPolicy(source="injected", rate=0.5, seed=3),
        first_called_turn=6,
    )
    await runner.run()
    assert len(provider.requests) == 2 * 2  # turns 7 and 8 of two episodes
    assert all(sum(m.role == "user" for m in r) in (7, 8) for r in provider.requests)
    records = read_records(tmp_path)
    filled = [r for r in records if r.filled]
    assert len(filled) == 2 * 6 and all(r.status == "filled" for r in filled)
    for r in filled:
        offset = injected_offset(3, r.episode, r.turn, 0.5, 10)
        assert r.shown == r.truth + offset and r.injected == (offset != 0)


async def test_window_sends_only_the_last_n_exchanges_and_the_dictionary(tmp_path):
    provider = ScriptedProvider(always(1))
    runner, _ = runner_for(tmp_path, provider, samples=1, turns=6, window=2)
    await runner.run()
    sizes = [len(r) for r in provider.requests]
    assert sizes == [2, 4, 6, 6, 6, 6]
    assert all(r[0].role == "system" and "DICTIONARY" in r[0].content for r in provider.requests)


def test_majority_ties_are_broken_by_the_seeded_generator():
    picks = {majority_answer([1, 2, None], np.random.default_rng(s))[0] for s in range(20)}
    assert picks == {1, 2}
    assert majority_answer([None, None], np.random.default_rng(0)) == (None, 0.0)


@pytest.mark.parametrize("rate", [0.0, 0.5, 1.0])
async def test_simulated_self_conditioning_matches_the_knob(tmp_path, rate):
    """Turn-T accuracy under an injected history should be p - slope * rate (K = 1)."""
    p, slope = 0.95, 0.5
    provider = SimulatedProvider(SimulatedConfig(p=p, self_conditioning=slope, seed=1))
    source = "injected" if rate > 0 else "healed"
    runner, _ = runner_for(
        tmp_path,
        provider,
        samples=400,
        turns=20,
        policy=HistoryPolicy(source=source, rate=rate, seed=2),
        first_called_turn=19,
    )
    await runner.run()
    scored = [r for r in read_records(tmp_path) if not r.filled]
    assert len(scored) == 400
    accuracy = np.mean([r.answer == r.base + r.delta for r in scored])
    assert accuracy == pytest.approx(p - slope * rate, abs=0.06)
