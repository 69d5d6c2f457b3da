"""An OpenAI-format batch API for tests: files, batches and their states, over real sockets.

It extends the fake chat server (same HTTP handling, same simulated answers, same request
log: every line a batch answers is logged like a chat request, so a test can prove no turn
was asked twice) with ``/v1/files`` and ``/v1/batches``. A batch moves one state per status
check: ``validating``, then ``in_progress`` for ``--polls`` checks, then it ends. What it ends
in is scripted by the batch's ordinal (0 for the first batch created):

* ``--fail-batches 0,2``: ``failed`` (refused as a whole, no lines answered);
* ``--expire-batches 1``: ``expired`` with the first half of its lines answered, the rest in
  the error file with code ``batch_expired`` (what OpenAI writes);
* ``--cancel-batches 1``: ``cancelled`` with half its lines answered and no word on the rest;
* otherwise ``completed``. ``--line-error-rate`` gives a line an HTTP 500 in the error file
  (drawn per attempt of the same request, so a resent line eventually goes through);
  ``--pad-output-kb`` pads every output line, for a large output file.

``POST /control {"hold_from": N}`` keeps every batch with ordinal >= N ``in_progress`` until
the hold is lifted (``null``): a test can kill a client while it polls, deterministically.
``GET /stats`` adds ``files_uploaded``, ``batches_created``, ``lines_submitted`` and
``polls`` (status checks per batch id) to the chat server's counts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import httpx

from harness.event_loop import run_async
from testing.fake_server import (
    FakeServer,
    Reply,
    ServerOptions,
    _error,
    _json,
    launched_server,
    options_from_flags,
)


def _opt(default: Any, text: str) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class BatchServerOptions(ServerOptions):
    """The chat server's options and the batch behaviour (see the module docstring)."""

    polls: int = _opt(2, "status checks a batch stays in_progress")
    fail_batches: str = _opt("", "ordinals of batches that fail validation, comma-separated")
    expire_batches: str = _opt("", "ordinals of batches that expire half done")
    cancel_batches: str = _opt("", "ordinals of batches that are cancelled half done")
    line_error_rate: float = _opt(0.0, "probability that a line gets HTTP 500 in the error file")
    pad_output_kb: float = _opt(0.0, "pad every output line to about this many kB")

    def ordinals(self, name: str) -> set[int]:
        """The ordinals listed in one of the comma-separated options."""
        text = getattr(self, name)
        return {int(part) for part in text.split(",") if part.strip()}


@dataclass
class Batch:
    """One batch at the server."""

    id: str
    ordinal: int
    input_file_id: str
    status: str = "validating"
    checks: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[dict[str, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """The batch object as the API returns it."""
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "input_file_id": self.input_file_id,
            "completion_window": "24h",
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "request_counts": self.counts,
        }


def parse_multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    """Form fields of a ``multipart/form-data`` body, by name (enough for an upload)."""
    boundary = content_type.partition("boundary=")[2].strip('"').encode()
    fields: dict[str, bytes] = {}
    for part in body.split(b"--" + boundary):
        head, sep, data = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        for line in head.decode("latin-1").split("\r\n"):
            if line.lower().startswith("content-disposition") and 'name="' in line:
                name = line.split('name="', 1)[1].split('"', 1)[0]
                fields[name] = data.removesuffix(b"\r\n")
    return fields


class FakeBatchServer(FakeServer):
    """See the module docstring."""

    def __init__(self, options: BatchServerOptions) -> None:
        super().__init__(options)
        self.batch_options = options
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, Batch] = {}
        self.polls: Counter[str] = Counter()
        self.line_attempts: Counter[str] = Counter()
        self.hold_from: int | None = None

    async def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        """Route batch requests here, everything else to the chat server."""
        batch_route = path.startswith(("/v1/files", "/v1/batches"))
        if path == "/control" and method == "POST":
            self.hold_from = json.loads(body or b"{}").get("hold_from")
            return _json(200, {"hold_from": self.hold_from})
        if path == "/stats":
            reply = await super().handle(method, path, headers, body)
            stats = json.loads(reply.body)
            stats.update(
                files_uploaded=self.stats["files_uploaded"],
                batches_created=self.stats["batches_created"],
                lines_submitted=self.stats["lines_submitted"],
                line_errors=self.stats["line_errors"],
                polls=dict(self.polls),
                statuses={b.id: b.status for b in self.batches.values()},
            )
            return _json(200, stats)
        if not batch_route or (self.key and headers.get("authorization") != f"Bearer {self.key}"):
            return await super().handle(method, path, headers, body)
        parts = path.strip("/").split("/")  # v1, files|batches, [id], [content|cancel]
        if parts[1] == "files":
            if method == "POST" and len(parts) == 2:
                return self._upload(headers.get("content-type", ""), body)
            if method == "GET" and len(parts) == 4 and parts[3] == "content":
                if parts[2] not in self.files:
                    return _error(404, f"no file {parts[2]}")
                return Reply(200, self.files[parts[2]], "application/jsonl")
        if parts[1] == "batches":
            if method == "POST" and len(parts) == 2:
                return self._create(body)
            if method == "GET" and len(parts) == 2:
                newest = sorted(self.batches.values(), key=lambda b: -b.ordinal)
                return _json(200, {"object": "list", "data": [b.public() for b in newest]})
            batch = self.batches.get(parts[2]) if len(parts) > 2 else None
            if batch is None:
                return _error(404, f"no batch {parts[2] if len(parts) > 2 else ''}")
            if method == "GET" and len(parts) == 3:
                return _json(200, (await self._check(batch)).public())
        return _error(404, f"no route {method} {path}")

    def _upload(self, content_type: str, body: bytes) -> Reply:
        fields = parse_multipart(content_type, body)
        if fields.get("purpose") != b"batch" or "file" not in fields:
            return _error(400, "an upload needs purpose=batch and a file")
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = fields["file"]
        self.stats["files_uploaded"] += 1
        return _json(200, {"id": file_id, "object": "file", "purpose": "batch"})

    def _create(self, body: bytes) -> Reply:
        request = json.loads(body)
        file_id = request.get("input_file_id")
        if file_id not in self.files:
            return _error(400, f"no input file {file_id!r}")
        if request.get("completion_window") != "24h" or request.get("endpoint") != (
            "/v1/chat/completions"
        ):
            return _error(400, "endpoint must be /v1/chat/completions and the window 24h")
        ordinal = len(self.batches)
        batch = Batch(id=f"batch_{ordinal}", ordinal=ordinal, input_file_id=file_id)
        self.batches[batch.id] = batch
        self.stats["batches_created"] += 1
        self.stats["lines_submitted"] += self.files[file_id].count(b"\n")
        return _json(200, batch.public())

    async def _check(self, batch: Batch) -> Batch:
        """One status check: move the batch on by one state (unless it is held)."""
        self.polls[batch.id] += 1
        if batch.status not in ("validating", "in_progress"):
            return batch
        batch.checks += 1
        held = self.hold_from is not None and batch.ordinal >= self.hold_from
        if batch.status == "validating":
            if batch.ordinal in self.batch_options.ordinals("fail_batches"):
                batch.status = "failed"
                batch.errors = [{"code": "invalid_request", "message": "injected failure"}]
            else:
                batch.status = "in_progress"
        elif not held and batch.checks > self.batch_options.polls:
            await self._finish(batch)
        return batch

    async def _finish(self, batch: Batch) -> None:
        """Answer the batch's lines and end it as scripted."""
        options = self.batch_options
        lines = [json.loads(x) for x in self.files[batch.input_file_id].splitlines() if x]
        ending = "completed"
        if batch.ordinal in options.ordinals("expire_batches"):
            ending = "expired"
        elif batch.ordinal in options.ordinals("cancel_batches"):
            ending = "cancelled"
        answered = lines if ending == "completed" else lines[: len(lines) // 2]
        output, errors = [], []
        for number, line in enumerate(answered):
            record = await self._answer(batch, number, line)
            (output if record["response"]["status_code"] == 200 else errors).append(record)
        if ending == "expired":
            for line in lines[len(answered) :]:
                errors.append(
                    {
                        "id": f"{batch.id}_req_x",
                        "custom_id": line["custom_id"],
                        "response": None,
                        "error": {"code": "batch_expired", "message": "not done in 24h"},
                    }
                )
        batch.output_file_id = self._store(output)
        batch.error_file_id = self._store(errors)
        batch.counts = {"total": len(lines), "completed": len(output), "failed": len(errors)}
        batch.status = ending

    async def _answer(self, batch: Batch, number: int, line: dict[str, Any]) -> dict[str, Any]:
        raw = json.dumps(line["body"]).encode()
        request_id = line["custom_id"] + hashlib.blake2b(raw, digest_size=16).hexdigest()
        attempt = self.line_attempts[request_id]
        self.line_attempts[request_id] += 1
        draw = random.Random(f"{self.options.seed}|{line['custom_id']}|{attempt}").random()
        model = line["body"].get("model")
        if model != self.options.model_id:
            reply = _error(404, f"The model {model!r} does not exist", "model_not_found")
        elif draw < self.batch_options.line_error_rate:
            self.stats["line_errors"] += 1
            reply = _error(500, "injected line error")
        else:
            reply = await self._chat(raw, "")
        body = json.loads(reply.body)
        pad = int(self.batch_options.pad_output_kb * 1000)
        if pad and reply.status == 200:
            body["padding"] = "x" * pad
        return {
            "id": f"{batch.id}_req_{number}",
            "custom_id": line["custom_id"],
            "response": {"status_code": reply.status, "request_id": f"req_{number}", "body": body},
            "error": None,
        }

    def _store(self, records: list[dict[str, Any]]) -> str | None:
        if not records:
            return None
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = "".join(json.dumps(r) + "\n" for r in records).encode()
        return file_id


async def serve(options: BatchServerOptions) -> None:
    """Listen on 127.0.0.1 forever; the first line on stdout names the base URL."""
    app = FakeBatchServer(options)
    server = await asyncio.start_server(app.connection, "127.0.0.1", options.port)
    port = server.sockets[0].getsockname()[1]
    print(f"fake batch server listening on http://127.0.0.1:{port}/v1", flush=True)
    async with server:
        await server.serve_forever()


def parse_options(argv: list[str] | None = None) -> BatchServerOptions:
    """Command-line flags, one per option field."""
    return options_from_flags(BatchServerOptions, "python -m testing.fake_batch_server", argv)


@dataclass(frozen=True)
class RunningBatchServer:
    """A server process started by :func:`running_batch_server`."""

    base_url: str
    """API root, ``http://127.0.0.1:PORT/v1``."""
    pid: int
    """Process id (the server is stopped by it)."""

    @property
    def root(self) -> str:
        """The URL without ``/v1``."""
        return self.base_url.removesuffix("/v1")

    def stats(self) -> dict[str, Any]:
        """The server's ``/stats``."""
        return httpx.get(self.root + "/stats", timeout=10).json()

    def hold(self, from_ordinal: int | None) -> None:
        """Keep batches from this ordinal on in progress (None lifts the hold)."""
        httpx.post(self.root + "/control", json={"hold_from": from_ordinal}, timeout=10)


@contextmanager
def running_batch_server(
    env: dict[str, str] | None = None, timeout: float = 30.0, **options: Any
) -> Iterator[RunningBatchServer]:
    """Start ``python -m testing.fake_batch_server`` on a free port; stop it by pid on exit."""
    args: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        args += (
            [flag if value else f"--no-{flag[2:]}"]
            if isinstance(value, bool)
            else [
                flag,
                str(value),
            ]
        )
    args = ["--port", "0", *args]
    with launched_server(
        "testing.fake_batch_server",
        args,
        lambda url: url.removesuffix("/v1") + "/stats",
        env,
        timeout,
    ) as (url, pid):
        yield RunningBatchServer(base_url=url, pid=pid)


if __name__ == "__main__":
    with suppress(KeyboardInterrupt):
        run_async(serve(parse_options()))
