"""A known fake key goes through every path that writes something; it must surface nowhere.

The server requires the key and quotes the Authorization header back in its 503 errors, as
careless servers do, so scrubbing is exercised on errors that end up in records. The runs use
``hydra.verbose=true`` (every DEBUG line of httpx and httpcore in ``cli.log`` and on stderr),
the response cache, a one-job sweep (sweep report), and a wrong key that the 401 echoes.
Every file under the test's directory and every captured output is then searched.
"""

import os
import subprocess
import sys
import uuid

import pytest

from harness.records.schema import TURNS_FILE, read_records
from testing.fake_server import running_fake_server

KEY_VARIABLE = "LHE_TEST_SECRET_KEY"


def lhe(
    base_url: str, key: str, *args: str, verbose: bool = True, multirun: bool = False
) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "harness.cli",
        *(["--multirun"] if multirun else []),
        "model=openai_compatible",
        "model.name=fake-model",
        f"model.base_url={base_url}",
        f"model.api_key_env={KEY_VARIABLE}",
        "model.max_attempts=2",
        "model.backoff_initial=0.01",
        "model.backoff_jitter=0.01",
        "model.max_retry_after=0.05",
        "task.samples=4",
        "task.turns=4",
        "run.progress=false",
        "metrics.bootstrap=0",
        f"hydra.verbose={str(verbose).lower()}",
        *args,
    ]
    return subprocess.run(
        command,
        env={**os.environ, KEY_VARIABLE: key},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def key() -> str:
    return f"sk-lhe-secret-{uuid.uuid4().hex}"


def test_the_key_appears_in_no_file_log_report_or_output(key, tmp_path):
    wrong = f"sk-lhe-wrong-{uuid.uuid4().hex}"
    with running_fake_server(
        env={"LHE_SERVER_KEY": key},
        api_key_env="LHE_SERVER_KEY",
        echo_auth=True,
        rate_503=0.5,
        seed=4,
        retry_after=0.01,
    ) as server:
        cache = f"cache.dir={tmp_path / 'cache'}"
        run = lhe(
            server.base_url, key, "cache.enabled=on", cache, f"hydra.run.dir={tmp_path / 'run'}"
        )
        sweep = lhe(
            server.base_url,
            key,
            "task.k=2",
            "cache.enabled=off",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
            multirun=True,
        )
        refused = lhe(server.base_url, wrong, f"hydra.run.dir={tmp_path / 'refused'}")
    outputs = [run, sweep, refused]
    assert run.returncode == 0, run.stderr[-2000:]
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    assert refused.returncode == 2 and "model.api_key_env" in refused.stderr

    # The paths that could leak were taken: debug logs written, the report and the cache
    # built, and the server's echo of the key reached the records (scrubbed).
    run_dir = tmp_path / "run"
    for name in ("cli.log", "report.html", "manifest.json", "summary.json", TURNS_FILE):
        assert (run_dir / name).stat().st_size > 0, name
    assert {p.name for p in (run_dir / ".hydra").iterdir()} >= {"config.yaml", "overrides.yaml"}
    assert "DEBUG" in (run_dir / "cli.log").read_text()
    assert any((tmp_path / "cache").rglob("*.json"))
    assert list((tmp_path / "sweep").rglob("*.html"))
    errors = [r.error for r in read_records(run_dir) if r.status == "provider_error"]
    assert errors and all("Bearer ***" in error for error in errors)

    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert len(files) > 20
    for path in files:
        content = path.read_bytes()
        assert key.encode() not in content and wrong.encode() not in content, path
    for output in outputs:
        for text in (output.stdout, output.stderr):
            assert key not in text and wrong not in text


def test_a_key_in_the_config_is_refused_before_any_request(key, tmp_path):
    """Keys come only from environment variables; a key field is an unknown-field error."""
    with running_fake_server() as server:
        refused = lhe(
            server.base_url,
            "sk-env",
            f"+model.api_key={key}",
            f"hydra.run.dir={tmp_path}",
            verbose=False,
        )
        assert server.stats()["requests"] == 0
    assert refused.returncode == 2
    assert "model.api_key: unknown field" in refused.stderr
    assert key not in refused.stderr and key not in refused.stdout
    assert not (tmp_path / TURNS_FILE).exists()
