"""The HTTP client end to end: it waits out ``Retry-After``, and 400/403/404 end a run at once.

The status server below is a real HTTP server on 127.0.0.1 in its own process: it lists a
model, answers every chat request with one fixed status and message, and counts requests.
"""

import contextlib
import subprocess
import sys
import time

import httpx
import pytest

from harness.cli import compose_config
from harness.pipeline import execute
from providers.base import Message, Sampling
from providers.openai_compatible import create
from tasks.prompts import system_prompt, user_message
from testing.fake_server import FAST_RETRIES, free_port, running_fake_server, stop_process

SYSTEM = system_prompt({"apple": 3, "beach": -2}, "direct", 1)

STATUS_SERVER = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
status, port = int(sys.argv[1]), int(sys.argv[2])
chats = 0
class Handler(BaseHTTPRequestHandler):
    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        if self.path == "/count":
            return self.reply(200, {"chats": chats})
        self.reply(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
    def do_POST(self):
        global chats
        chats += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        self.reply(status, {"error": {"message": f"status server says {status}"}})
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


@contextlib.contextmanager
def status_server(status):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", STATUS_SERVER, str(status), str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None and time.monotonic() < deadline, "no answer"
            try:
                httpx.get(f"{url}/count", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        yield url
    finally:
        stop_process(process)


@pytest.mark.parametrize("status", [400, 403, 404])
async def test_a_client_error_fails_the_run_at_once_with_the_servers_message(tmp_path, status):
    with status_server(status) as url:
        config = compose_config(
            ["model=openai_compatible", "model.name=fake-model", f"model.base_url={url}/v1",
             *(f"model.{k}={v}" for k, v in FAST_RETRIES.items()),
             "task.samples=4", "task.turns=3", "run.concurrency=1", "run.progress=false",
             "metrics.bootstrap=0", "cache.enabled=off"]
        )  # fmt: skip
        summary = await execute(config, tmp_path)
        chats = httpx.get(f"{url}/count").json()["chats"]
    assert chats == 1  # not retried, and no other turn was started
    assert summary.status == "failed"
    assert f"status server says {status}" in summary.note
    field = "model.api_key_env" if status == 403 else "model"
    assert summary.note.startswith(f"{field}:")


async def test_the_client_waits_out_retry_after():
    """Every 429 carries Retry-After: 0.4 s (with backoff of 0.01-0.05 s otherwise): the
    request cannot have come back sooner than 0.4 s per 429 it got."""
    retry_after = 0.4
    with running_fake_server(seed=2, rate_429=0.5, retry_after=retry_after) as server:
        provider = create(
            {"name": "fake-model", "base_url": server.base_url, **FAST_RETRIES,
             "max_retry_after": 5.0},
            concurrency=1,
        )  # fmt: skip
        try:
            results = []
            for seed in range(4):
                started = time.monotonic()
                messages = [Message("system", SYSTEM), Message("user", user_message(["apple"]))]
                result = await provider.chat(messages, Sampling(seed=seed, max_tokens=8))
                results.append((result, time.monotonic() - started))
        finally:
            await provider.aclose()
    waited_429s = 0
    for result, elapsed in results:
        assert result.outcome == "ok"
        count = result.retry_reasons.get("429", 0)
        assert result.retries == count
        assert elapsed >= count * retry_after
        waited_429s += count
    assert waited_429s >= 2  # the seed gives several 429s in these four requests
