"""The simulated executor's error_mix through the whole pipeline, read back by the taxonomy."""

import pytest

from harness.cli import compose_config
from harness.config import ConfigError
from harness.pipeline import execute, make_provider

MIX = {"value_only": 0.5, "wrong_key": 0.3, "arithmetic": 0.2}


def overrides(*extra):
    return [
        "model=simulated",
        "model.p=0.7",
        "task.samples=120",
        "task.turns=60",
        "run.concurrency=32",
        "run.progress=false",
        "metrics.bootstrap=0",
        *extra,
    ]


@pytest.mark.slow
async def test_the_classifier_recovers_the_executors_error_mix(tmp_path):
    """2,000+ wrong turns of a known mix: every share within 3 points of the mix.

    The dictionary is sparse (100 values in [-9999, 9999]), so a slip of a few units rarely
    also reads as wrong_key (with values in [-99, 99] about 40% would): what is checked is
    the classifier, not the overlap of two rules on a dense dictionary.
    """
    mix = "{" + ", ".join(f"{kind}: {weight}" for kind, weight in MIX.items()) + "}"
    config = compose_config(
        overrides(f"model.error_mix={mix}", "task.min_value=-9999", "task.max_value=9999")
    )
    summary = await execute(config, tmp_path)
    taxonomy = summary.error_taxonomy
    assert taxonomy.wrong_turns >= 2000
    shares = {name: entry.share for name, entry in taxonomy.overall.items()}
    for kind, weight in MIX.items():
        assert shares[kind] == pytest.approx(weight, abs=0.03), kind
    chance = taxonomy.overall["value_only"].chance_share
    assert chance < shares["value_only"] / 10  # evidence, not an accident


@pytest.mark.slow
async def test_random_offset_errors_get_almost_no_value_only_by_chance(tmp_path):
    """Today's executor (no error_mix) only adds offsets; on the default dense dictionary the
    permutation baseline must not call many of them value_only."""
    summary = await execute(compose_config(overrides()), tmp_path)
    taxonomy = summary.error_taxonomy
    assert taxonomy.wrong_turns >= 2000
    overall = taxonomy.overall
    assert overall["value_only"].chance_share < 0.02
    # The offsets themselves make value_only only where base + offset happens to be 0.
    assert overall["value_only"].share < 0.02
    assert overall["arithmetic"].share + overall["wrong_key"].share > 0.9


@pytest.mark.parametrize(
    ("mix", "message"),
    [
        ("{value_only: -1}", "model.error_mix: weights must be >= 0 with a positive sum"),
        ("{value_only: 0}", "model.error_mix: weights must be >= 0 with a positive sum"),
        ("{valu_only: 1}", "model.error_mix.valu_only.[key]: Input should be 'value_only'"),
    ],
)
async def test_a_bad_mix_fails_in_one_line_before_any_call(mix, message):
    config = compose_config(overrides(f"model.error_mix={mix}"))
    with pytest.raises(ConfigError) as failed:
        await make_provider(config)
    assert str(failed.value).startswith(message)
    assert "\n" not in str(failed.value)
