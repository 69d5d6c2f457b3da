"""Strategies through the whole pipeline: sample seeds over HTTP, and a budget that caps."""

import json
from collections import Counter

import pytest

from harness.cli import compose_config
from harness.config import ConfigError, load_config
from harness.pipeline import execute
from harness.records.schema import read_records
from harness.run.strategies import sample_seed
from testing.fake_server import running_fake_server


@pytest.fixture(autouse=True)
def _no_report(monkeypatch):
    """The HTML report is not under test here (and needs matplotlib time)."""
    monkeypatch.setattr(
        "harness.pipeline.write_run_report", lambda run_dir: run_dir / "report.html"
    )


def http_config(base_url: str, strategy: dict) -> dict:
    return {
        "model": {
            "provider": "openai_compatible",
            "name": "fake-model",
            "base_url": base_url,
            "max_tokens": 16,
            "backoff_initial": 0.01,
            "backoff_max": 0.05,
        },
        "task": {"samples": 4, "turns": 5, "k": 1, "seed": 3},
        "run": {"concurrency": 4, "seed": 1, "progress": False},
        "strategy": strategy,
        "metrics": {"bootstrap": 0},
    }


@pytest.mark.parametrize(
    "strategy",
    [{"name": "majority", "n": 3}, {"name": "ahead_by_k", "k": 2}],
    ids=lambda s: s["name"],
)
async def test_each_sample_is_its_own_seeded_request_whether_or_not_n_is_honoured(
    tmp_path, strategy
):
    votes = {}
    for ignore_n in (False, True):
        log = tmp_path / f"requests-{ignore_n}.jsonl"
        run_dir = tmp_path / f"run-{ignore_n}"
        with running_fake_server(p=0.75, log_requests=str(log), ignore_n=ignore_n) as server:
            await execute(load_config(http_config(server.base_url, strategy)), run_dir)
        records = sorted(read_records(run_dir), key=lambda r: (r.episode, r.turn))
        assert len(records) == 4 * 5 and all(r.status == "ok" for r in records)
        requests = [json.loads(line) for line in log.read_text().splitlines()]
        assert all(request["n"] == 1 for request in requests)
        expected = Counter(
            sample_seed(1, r.episode, r.turn, i) for r in records for i in range(r.n_samples)
        )
        assert Counter(request["seed"] for request in requests) == expected
        for r in records:
            seeds = [sample_seed(1, r.episode, r.turn, i) for i in range(r.n_samples)]
            assert [s.seed for s in r.samples] == seeds
        votes[ignore_n] = [(r.episode, r.turn, r.sample_answers, r.answer) for r in records]
    assert votes[False] == votes[True]
    assert len({tuple(a) for _, _, a, _ in votes[False] if len(set(a)) > 1}) > 0  # samples differ


SIM = ["model=simulated", "model.p=0.9", "task.samples=10", "task.turns=20", "metrics.bootstrap=0"]


async def test_a_budget_below_the_estimate_refuses_by_default(tmp_path):
    config = compose_config([*SIM, "strategy=ahead_by_k", "budget.max_tokens=50000"])
    with pytest.raises(ConfigError, match=r"^budget.max_tokens: the estimate is"):
        await execute(config, tmp_path)
    assert not (tmp_path / "turns.jsonl").exists()


async def test_over_estimate_run_starts_anyway_and_stops_at_the_budget(tmp_path, capsys):
    limit = 50_000
    config = compose_config(
        [*SIM, "strategy=ahead_by_k", f"budget.max_tokens={limit}", "budget.over_estimate=run"]
    )
    summary = await execute(config, tmp_path)
    records = read_records(tmp_path)
    spent = [r.usage.prompt_tokens + r.usage.completion_tokens for r in records]
    assert summary.status == "stopped" and summary.stopped_by == "budget.max_tokens"
    assert summary.turns_unfinished == 10 * 20 - len(records) > 0
    assert summary.note == f"stopped early by budget.max_tokens after {len(records)} turns"
    assert sum(spent) >= limit > sum(spent) - sum(spent[-config.run.concurrency :])
    assert "budget.over_estimate=run: starting anyway" in capsys.readouterr().err
    assert summary.strategy.samples == sum(r.n_samples for r in records)


async def test_a_dollar_limit_without_a_price_is_refused_even_with_over_estimate_run(tmp_path):
    config = compose_config([*SIM, "budget.max_usd=1", "budget.over_estimate=run"])
    with pytest.raises(ConfigError, match=r"^budget.max_usd: no price is known"):
        await execute(config, tmp_path)
