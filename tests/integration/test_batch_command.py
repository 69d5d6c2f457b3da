"""model.batch=command: an offline engine run per turn, here the simulated executor as a command.

``testing.batch_command`` reads and writes the batch JSONL as ``vllm run-batch`` does and
answers with the same simulated executor as ``model=simulated``, so that run is the
reference: the records must match it exactly.
"""

import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.cli import compose_config
from harness.config import ConfigError, load_config
from harness.pipeline import execute
from harness.records.schema import TURNS_FILE, read_records
from providers.batch_state import STATE_DIR, STATE_FILE, BatchState

EPISODES, TURNS, P = 6, 4, 0.8
DETERMINISTIC = ("episode", "turn", "keys", "truth", "base", "answer", "status", "reply")
TASK = {"samples": EPISODES, "turns": TURNS, "k": 2, "seed": 3}


def batch_command(log: Path, *extra: str) -> str:
    python = shlex.quote(sys.executable)
    return (
        f"{python} -m testing.batch_command -i {{input}} -o {{output}} --p {P} "
        f"--log {shlex.quote(str(log))} " + " ".join(extra)
    ).strip()


def config(model: dict[str, Any]) -> Any:
    return load_config(
        {
            "model": {"max_tokens": 16, **model},
            "task": TASK,
            "run": {"concurrency": 2, "seed": 1, "progress": False},
            "metrics": {"bootstrap": 0},
            "cache": {"enabled": "off"},
        }
    )


def command_config(log: Path, *extra: str) -> Any:
    return config(
        {
            "provider": "openai_compatible",
            "name": "Qwen/Qwen3-8B",
            "base_url": "http://127.0.0.1:9/v1",  # never contacted in command mode
            "batch": "command",
            "batch_command": batch_command(log, *extra),
        }
    )


def rows(run_dir: Path) -> list[tuple]:
    return sorted(tuple(getattr(r, f) for f in DETERMINISTIC) for r in read_records(run_dir))


def answered(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


async def test_a_command_run_gives_the_simulated_executors_records(tmp_path):
    await execute(config({"provider": "simulated", "p": P}), tmp_path / "simulated")
    log = tmp_path / "answered.jsonl"
    summary = await execute(command_config(log), tmp_path / "batch")
    assert rows(tmp_path / "batch") == rows(tmp_path / "simulated")
    assert len(answered(log)) == EPISODES * TURNS == len(set(answered(log)))
    assert summary.batch.batches == TURNS and summary.status == "complete"


async def test_a_resumed_command_run_reads_finished_batches_instead_of_running_them(tmp_path):
    log = tmp_path / "answered.jsonl"
    run_dir = tmp_path / "batch"
    await execute(command_config(log), run_dir)
    complete = rows(run_dir)
    # A crash after the last two batches wrote their output but before their records did.
    turns_file = run_dir / TURNS_FILE
    kept = [line for line in turns_file.read_text().splitlines() if '"turn":0,' in line]
    kept += [line for line in turns_file.read_text().splitlines() if '"turn":1,' in line]
    turns_file.write_text("\n".join(kept) + "\n")
    before = answered(log)
    await execute(command_config(log), run_dir)
    assert rows(run_dir) == complete
    assert answered(log) == before  # the command never ran again
    assert (
        len(BatchState.model_validate_json((run_dir / STATE_DIR / STATE_FILE).read_bytes()).batches)
        == TURNS
    )


async def test_a_failing_command_stops_the_run_with_its_message(tmp_path):
    summary = await execute(command_config(tmp_path / "log", "--exit-code 3"), tmp_path / "b")
    assert summary.status == "failed"
    assert summary.note.startswith("model.batch_command: exited with code 3")
    assert "CUDA out of memory" in summary.note
    assert read_records(tmp_path / "b") == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["model=vllm", "model.name=m", "model.batch=command", "model.batch_command=run"],
            "model.batch_command: must contain {input} and {output}",
        ),
        (
            ["model=simulated", "model.batch=api"],
            "model.batch: api needs an OpenAI-compatible preset",
        ),
        (
            ["model=vllm", "model.name=m", "model.batch=sometimes"],
            "model.batch: Input should be 'off', 'api' or 'command'",
        ),
    ],
)
async def test_bad_batch_settings_fail_in_one_line_before_any_call(tmp_path, overrides, message):
    with pytest.raises(ConfigError) as error:
        config_ = compose_config(overrides)
        await execute(config_, tmp_path / "run")
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run" / STATE_DIR).exists()
