import json
import os
import subprocess
import sys

import pytest

from harness.cli import compose_config
from harness.config import ConfigError
from harness.pipeline import prepare
from harness.records.run_lock import LOCK_FILE, holding

# (overrides, the field the one-line error must name)
BAD_CONFIGS = [
    (["task.k=0"], "task.k"),
    (["task.turns=0"], "task.turns"),
    (["task.samples=0"], "task.samples"),
    (["task.min_value=5", "task.max_value=1"], "task.min_value"),
    (["task.dict_size=100000"], "task.dict_size"),
    (["task.dict_size=0"], "task.dict_size"),
    (["task.mode=fast"], "task.mode"),
    (["+task.typo=1"], "task.typo"),
    (["task.source=/nonexistent/tasks.json"], "task.source"),
    (["metrics.s=0"], "metrics.s"),
    (["metrics.s=1.5"], "metrics.s"),
    (["metrics.bootstrap=-1"], "metrics.bootstrap"),
    (["run.concurrency=0"], "run.concurrency"),
    (["+run.typo=3"], "run.typo"),
    (["model.provider=nonexistent"], "model.provider"),
    (["model.temperature=-1"], "model.temperature"),
    (["model.top_p=0"], "model.top_p"),
    (["model.max_tokens=0"], "model.max_tokens"),
    (["model.p=1.5"], "model.p"),
    (["model.context_decay=-0.1"], "model.context_decay"),
    (["+model.bogus_knob=1"], "model.bogus_knob"),
    (["model=gpt9"], "model"),
    (["experiment=nope"], "experiment"),
    (["history=own,bogus"], "history"),
]


@pytest.fixture
def model_calls(monkeypatch):
    """Every chat request the simulated executor receives in this test."""
    from providers.simulated import SimulatedProvider

    calls = []
    original = SimulatedProvider.chat

    async def counted(self, messages, sampling):
        calls.append(messages)
        return await original(self, messages, sampling)

    monkeypatch.setattr(SimulatedProvider, "chat", counted)
    return calls


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        *BAD_CONFIGS,
        (["budget.max_usd=1"], "budget.max_usd"),
        (["model.price={input:3,output:15}", "budget.max_usd=0.0001"], "budget.max_usd"),
        (["budget.max_tokens=10"], "budget.max_tokens"),
    ],
)
async def test_bad_config_fails_before_any_model_call_with_one_line_naming_the_field(
    overrides, field, tmp_path, model_calls
):
    from harness.pipeline import execute

    with pytest.raises(ConfigError) as caught:
        config = compose_config(["model=simulated", *overrides])
        await prepare(config)
        await execute(config, tmp_path / "run")
    assert model_calls == []
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(field + ":") or f"{field}:" in message


def test_errors_name_the_allowed_values():
    with pytest.raises(ConfigError, match=r"^model: no preset named 'gpt9' \(allowed: .*simulated"):
        compose_config(["model=gpt9"])
    with pytest.raises(ConfigError, match="'direct', 'cot' or 'thinking'"):
        compose_config(["model=simulated", "task.mode=fast"])
    with pytest.raises(ConfigError, match=r"allowed: .*k.*samples"):
        compose_config(["model=simulated", "+task.typo=1"])
    with pytest.raises(ConfigError, match="greater than or equal to 1"):
        compose_config(["model=simulated", "task.k=0"])


def test_lhe_command_runs_end_to_end_and_writes_its_files(tmp_path):
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "model=simulated",
            "model.p=0.9",
            "task.samples=30",
            "task.turns=12",
            "task.k=2",
            "metrics.bootstrap=200",
            f"hydra.run.dir={run_dir}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    assert result.returncode == 0, result.stderr
    assert "SIMULATED" in result.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert summary["simulated"] is True and manifest["provider"]["simulated"] is True
    assert summary["episodes"] == 30 and len(summary["task_accuracy"]) == 12
    assert summary["turns_scored"] == 30 * 12
    for key in ("steps", "turns", "ci95", "logistic_steps", "censored", "s"):
        assert key in summary["horizon"]
    assert set(summary["tokens_spent"]) >= {
        "prompt_tokens",
        "completion_tokens",
        "reasoning_tokens",
    }
    for key in ("config", "config_hash", "packages", "git_commit", "seeds"):
        assert key in manifest
    assert len(manifest["task_set"]["fingerprint"]) == 64
    lines = (run_dir / "turns.jsonl").read_text().splitlines()
    assert len(lines) == 30 * 12


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("task.k=0", "task.k"),
        ("experiment=nope", "experiment"),
        ("task.typo=1", "task.typo"),  # Hydra's own message for this spans seven lines
        ("run.concurrency=[1", "overrides"),
    ],
)
def test_lhe_command_prints_one_line_for_a_bad_config(tmp_path, override, field):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "model=simulated",
            override,
            f"hydra.run.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith(f"lhe: error: {field}:")
    assert not (tmp_path / "turns.jsonl").exists()


def small_run(run_dir) -> list[str]:
    """An ``lhe`` command of a simulated run that takes about a second."""
    return [
        sys.executable,
        "-m",
        "harness.cli",
        "model=simulated",
        "task.samples=3",
        "task.turns=4",
        f"hydra.run.dir={run_dir}",
    ]


def test_resuming_with_a_different_config_is_refused_naming_the_fields(tmp_path):
    common = small_run(tmp_path)
    assert subprocess.run(common, capture_output=True, timeout=120).returncode == 0
    again = subprocess.run([*common, "model.p=0.5"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 2
    assert "model.p" in again.stderr


def test_a_run_directory_another_session_holds_is_refused_in_one_line(tmp_path):
    run = small_run(tmp_path)
    with holding(tmp_path / LOCK_FILE, busy="-"):  # this process is "another session"
        refused = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert refused.stderr == (
        f"lhe: error: {tmp_path}: another lhe session is running here (pid {os.getpid()}); "
        "wait for it to end or stop it\n"
    )
    assert not (tmp_path / "manifest.json").exists() and not (tmp_path / "turns.jsonl").exists()
    assert subprocess.run(run, capture_output=True, timeout=120).returncode == 0  # released


def test_resume_dir_continues_the_same_run(tmp_path):
    run_dir = tmp_path / "run"
    first = [
        sys.executable,
        "-m",
        "harness.cli",
        "model=simulated",
        "task.samples=3",
        "task.turns=5",
        f"hydra.run.dir={run_dir}",
    ]
    assert subprocess.run(first, capture_output=True, timeout=120).returncode == 0
    # drop the last turn of every episode as if the run had been killed
    path = run_dir / "turns.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if json.loads(line)["turn"] < 4]
    path.write_text("".join(kept))
    again = subprocess.run(
        [sys.executable, "-m", "harness.cli", f"resume={run_dir}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 15
    assert sorted((r["episode"], r["turn"]) for r in records) == [
        (e, t) for e in range(3) for t in range(5)
    ]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["turns_resumed"] == 12


def test_a_bad_value_anywhere_in_a_sweep_stops_it_before_the_first_job(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "-m",
            "model=simulated",
            "model.p=0.9,0.8",
            "task.k=1,2,0",
            f"hydra.sweep.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "lhe: error: task.k: Input should be greater than or equal to 1 (got 0)"
    )
    assert not list(tmp_path.glob("*/turns.jsonl"))  # no job started


def test_missing_launcher_plugin_gives_an_install_hint(monkeypatch):
    from harness import cli

    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: None)
    assert "pip install -e '.[sweep]'" in cli.missing_launcher(["-m", "hydra/launcher=joblib"])
    assert "pip install -e '.[ray]'" in cli.missing_launcher(["-m", "hydra/launcher=ray"])
    assert cli.missing_launcher(["model=simulated"]) is None


async def test_more_bad_inputs_fail_before_any_model_call(tmp_path):
    from harness.pipeline import execute

    unreadable = tmp_path / "tasks.json"
    unreadable.write_text("{not json")
    mismatched = tmp_path / "paper.json"
    mismatched.write_text(
        json.dumps(
            {
                "dictionary": {"apple": 1, "beach": 2},
                "ground_truth_data": [
                    {"input": ["apple", "beach"], "values": [1], "output": [1, 3]}
                ],
            }
        )
    )
    cases = [
        (["budget.max_usd=1"], "budget.max_usd"),  # no price known for the model
        (["model.price={input:3,output:15}", "budget.max_usd=0.0001"], "budget.max_usd"),
        ([f"task.source={unreadable}"], "task.source"),
        ([f"task.source={mismatched}"], "task.source"),
    ]
    for overrides, field in cases:
        config = compose_config(["model=simulated", *overrides])
        with pytest.raises(ConfigError) as caught:
            await execute(config, tmp_path / "run")
        assert str(caught.value).startswith(field + ":"), str(caught.value)
        assert not (tmp_path / "run" / "turns.jsonl").exists()


async def test_estimate_prints_the_expected_cost_and_calls_nothing(tmp_path, capsys):
    from harness.economics.estimate import RunEstimate
    from harness.pipeline import execute

    config = compose_config(
        ["model=simulated", "model.price={input:1,output:2}", "estimate=true", "task.turns=40"]
    )
    result = await execute(config, tmp_path / "run")
    assert isinstance(result, RunEstimate)
    assert result.requests == 20 * 40
    assert "$" in capsys.readouterr().out
    assert not (tmp_path / "run").exists()
