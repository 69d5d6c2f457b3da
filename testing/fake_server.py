"""An OpenAI-compatible test server that answers like the simulated executor and injects faults.

It lets the HTTP adapter, its retries and the runner be tested over real sockets. Run it with
``python -m testing.fake_server --port 8000 --rate-503 0.1`` (``--help`` lists every
option). Replies come from :class:`providers.simulated.SimulatedProvider`, so they are a
pure function of the request. Whether an attempt gets a fault is drawn from a generator seeded
by (``--seed``, request body, how often this body was seen), so a retried request eventually
goes through and the set of injected faults is the same on every run. ``GET /stats`` counts
them by kind, for tests to compare with the retries the client recorded, and
``--log-requests FILE`` appends one line per chat request (its seed, n and a hash of its
conversation), for tests that must prove a turn was never asked twice. ``--hold-after N``
answers the first N chat requests and holds every later one until ``POST /release``
(``/stats`` counts those ``held``), so a test can act while a known set of requests is in
flight without guessing at timings.

Plain asyncio streams, so one process holds thousands of open connections; on uvloop where
it is installed (:mod:`harness.event_loop`), since its CPU counts whenever it shares the
cores with the client under test.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import math
import os
import random
import resource
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TextIO, TypeVar

import httpx
import orjson

from harness.event_loop import run_async
from providers.base import Message, Sampling
from providers.simulated import SimulatedConfig, SimulatedProvider

OptionsT = TypeVar("OptionsT")
"""An options dataclass (:class:`ServerOptions` or the batch server's)."""

FAULTS = ("429", "500", "503", "stall", "drop", "malformed", "no_choices", "html", "big_body")
"""Fault kinds, in the order their rates are stacked on the unit interval."""
RETRIED_FAULTS = frozenset(FAULTS) - {"big_body"}
"""Faults a correct client must retry; a big body is a valid reply, only a large one."""


FAST_RETRIES = {
    "connect_timeout": 5.0,
    "read_timeout": 3.0,
    "preflight_timeout": 5.0,
    "max_attempts": 12,
    "backoff_initial": 0.01,
    "backoff_max": 0.05,
    "backoff_jitter": 0.01,
    "max_retry_after": 0.2,
    "max_malformed_retries": 8,
}
"""Adapter settings for tests against this server: fast retries and a short read timeout, so
stalls and backoffs resolve within a test."""


def _opt(default: Any, text: str) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class ServerOptions:
    """Command-line options; one field per flag (``rate_429`` is ``--rate-429``)."""

    port: int = _opt(0, "port on 127.0.0.1; 0 picks a free one (printed on the first line)")
    p: float = _opt(1.0, "per-step accuracy of the simulated answers")
    seed: int = _opt(0, "seed of the fault and latency draws")
    rate_429: float = _opt(0.0, "probability of HTTP 429 with Retry-After")
    rate_500: float = _opt(0.0, "probability of HTTP 500")
    rate_503: float = _opt(0.0, "probability of HTTP 503")
    rate_stall: float = _opt(0.0, "probability of silence for --stall-seconds, then a close")
    rate_drop: float = _opt(0.0, "probability of closing the connection without a reply")
    rate_malformed: float = _opt(0.0, "probability of a 200 reply that is not valid JSON")
    rate_no_choices: float = _opt(0.0, "probability of a 200 reply with an empty choices list")
    rate_html: float = _opt(0.0, "probability of a 200 text/html page instead of JSON")
    rate_big_body: float = _opt(0.0, "probability of a valid reply padded to --big-body-mb")
    retry_after: float = _opt(1.0, "seconds sent in the Retry-After header of a 429")
    max_in_flight: int = _opt(
        0, "answer 429 with Retry-After at once when more chat requests are in flight (0: off)"
    )
    stall_seconds: float = _opt(30.0, "how long a stall lasts (make it exceed the read timeout)")
    big_body_mb: float = _opt(1.0, "size of a big-body reply in MB")
    big_body_in_content: bool = _opt(
        False, "pad a big body's answer text itself (a huge reply) rather than the JSON around it"
    )
    echo_auth: bool = _opt(
        False, "quote the request's Authorization header in 429/5xx error messages"
    )
    log_requests: str = _opt(
        "", "append one JSON line per chat request (seed, conversation hash, fault) to this file"
    )
    max_context_chars: int = _opt(0, "prompts longer than this get a context error (0: off)")
    latency_median: float = _opt(0.0, "median reply latency in seconds (0: none)")
    latency_sigma: float = _opt(0.0, "sigma of the lognormal latency (0: always the median)")
    api_key_env: str = _opt("", "require 'Bearer $VAR' with the key in this env var (empty: off)")
    model_id: str = _opt("fake-model", "model id listed by /v1/models and sent in replies")
    usage: bool = _opt(True, "report token usage in replies")
    hold_after: int = _opt(
        0, "answer the first N chat requests, hold the later ones until POST /release (0: off)"
    )
    ignore_n: bool = _opt(False, "answer one choice whatever n asks for (as llama.cpp's server)")

    def rates(self) -> list[tuple[str, float]]:
        """(kind, probability) for every fault, in :data:`FAULTS` order."""
        return [(kind, getattr(self, f"rate_{kind}")) for kind in FAULTS]


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP reply; ``status`` 0 means close the connection without a reply."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def _json(status: int, data: Any, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, json.dumps(data).encode(), headers=headers)


def _error(status: int, message: str, code: str | None = None) -> Reply:
    return _json(status, {"error": {"message": message, "type": "fake_server", "code": code}})


_FIXED_FAULTS = {
    "500": _error(500, "injected 500"),
    "503": _error(503, "injected 503"),
    "stall": Reply(0),
    "drop": Reply(0),
    "malformed": Reply(200, b'{"id": "chatcmpl-x", "choices": [{"message": {"content": "<ans'),
    "html": Reply(200, b"<html><body>502 Bad Gateway</body></html>", "text/html"),
}
"""Replies of the faults that do not depend on the request."""


_FILLER = "and so the running total stays as stated above. "


def _padded(text: str, size: int) -> str:
    """``text`` followed by prose up to ``size`` characters: a model that will not stop."""
    missing = max(size - len(text) - 1, 0)
    return text + "\n" + (_FILLER * (missing // len(_FILLER) + 1))[:missing]


class FakeServer:
    """The request handling; see the module docstring."""

    def __init__(self, options: ServerOptions) -> None:
        if sum(rate for _, rate in options.rates()) > 1.0:
            raise ValueError("fake_server: the fault rates add up to more than 1")
        self.options = options
        self.key = os.environ.get(options.api_key_env, "") if options.api_key_env else ""
        self.simulated = SimulatedProvider(SimulatedConfig(p=options.p))
        self.seen: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self.in_flight = 0
        self.held = 0
        self.released = asyncio.Event()
        self.log: TextIO | None = None
        if options.log_requests:  # line-buffered: every request is on disk when it is answered
            self.log = open(options.log_requests, "a", buffering=1)  # noqa: SIM115

    def _draw(self, body: bytes) -> tuple[str | None, random.Random]:
        """The fault of this attempt of this body (or ``None``), and its generator."""
        body_id = hashlib.blake2b(body, digest_size=16).hexdigest()
        attempt = self.seen[body_id]
        self.seen[body_id] += 1
        rng = random.Random(f"{self.options.seed}|{body_id}|{attempt}")
        u = rng.random()
        for kind, rate in self.options.rates():
            if u < rate:
                return kind, rng
            u -= rate
        return None, rng

    async def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        """Route one request."""
        if path == "/stats":
            return _json(
                200,
                {
                    "requests": self.stats["requests"],
                    "faults": self._faults(),
                    "max_in_flight": self.stats["max_in_flight"],
                    "held": self.held,
                },
            )
        if method == "POST" and path == "/release":
            self.released.set()
            return _json(200, {"released": self.held})
        if self.key and headers.get("authorization") != f"Bearer {self.key}":
            self.stats["unauthorized"] += 1
            # Echo what was sent, as careless servers do: the client must scrub it.
            sent = headers.get("authorization", "")
            return _error(401, f"Incorrect API key provided: {sent!r}", "invalid_api_key")
        if method == "GET" and path == "/v1/models":
            model = {"id": self.options.model_id, "object": "model", "owned_by": "fake"}
            return _json(200, {"object": "list", "data": [model]})
        if method == "POST" and path == "/v1/chat/completions":
            return await self._chat(body, headers.get("authorization", ""))
        return _error(404, f"no route {method} {path}")

    def _faults(self) -> dict[str, int]:
        kinds = (*FAULTS, "over_limit", "context_exceeded", "unauthorized")
        return {kind: self.stats[kind] for kind in kinds}

    def _log(self, request: dict[str, Any], fault: str | None) -> None:
        """One line per chat request: which turn it was (seed), what it said, what it got."""
        if self.log is None:
            return
        conversation = json.dumps(request["messages"], sort_keys=True).encode()
        line = {
            "seed": request.get("seed"),
            "n": request.get("n", 1),
            "conversation": hashlib.blake2b(conversation, digest_size=16).hexdigest(),
            "fault": fault,
        }
        self.log.write(json.dumps(line) + "\n")

    async def _chat(self, raw: bytes, authorization: str) -> Reply:
        self.stats["requests"] += 1
        limit = self.options.max_in_flight
        if limit and self.in_flight >= limit:
            # A gateway's concurrency limit: rejected before any work, so at once.
            self.stats["over_limit"] += 1
            retry_after = (("Retry-After", f"{self.options.retry_after:g}"),)
            return _json(429, {"error": {"message": "too many requests in flight"}}, retry_after)
        self.in_flight += 1
        self.stats["max_in_flight"] = max(self.stats["max_in_flight"], self.in_flight)
        held = 0 < self.options.hold_after < self.stats["requests"]
        try:
            return await self._accepted(raw, authorization, held)
        finally:
            self.in_flight -= 1

    async def _accepted(self, raw: bytes, authorization: str, held: bool = False) -> Reply:
        try:
            request = orjson.loads(raw)
            messages = [Message(m["role"], m["content"]) for m in request["messages"]]
            stop = request.get("stop") or []
            fields = ("temperature", "top_p", "max_tokens", "seed") + (
                () if self.options.ignore_n else ("n",)
            )
            sampling = Sampling(
                **{k: request[k] for k in fields if k in request},
                stop=[stop] if isinstance(stop, str) else stop,
            )
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, f"bad request: {exc}")
        chars = sum(len(m.content) for m in messages)
        if 0 < self.options.max_context_chars < chars:
            self.stats["context_exceeded"] += 1
            return _error(
                400,
                f"This model's maximum context length is {self.options.max_context_chars} "
                f"characters, but the messages have {chars}.",
                "context_length_exceeded",
            )
        fault, rng = self._draw(raw)
        self._log(request, fault)
        if held and not self.released.is_set():
            self.held += 1
            try:
                await self.released.wait()
            finally:
                self.held -= 1
        if self.options.latency_median > 0:
            mu = math.log(self.options.latency_median)
            await asyncio.sleep(rng.lognormvariate(mu, self.options.latency_sigma))
        if fault is not None:
            self.stats[fault] += 1
        return await self._reply(fault, messages, sampling, authorization)

    async def _reply(
        self, fault: str | None, messages: list[Message], sampling: Sampling, authorization: str
    ) -> Reply:
        # Careless servers quote the request in their errors; the client must scrub the key.
        echo = f" (request had Authorization: {authorization})" if self.options.echo_auth else ""
        if fault == "429":
            retry_after = (("Retry-After", f"{self.options.retry_after:g}"),)
            error = {"message": "rate limited" + echo, "code": 429}
            return _json(429, {"error": error}, retry_after)
        if fault in ("500", "503") and echo:
            return _error(int(fault), f"injected {fault}{echo}")
        if fault == "stall":
            await asyncio.sleep(self.options.stall_seconds)
        if fault in _FIXED_FAULTS:
            return _FIXED_FAULTS[fault]
        try:
            result = await self.simulated.chat(messages, sampling)
        except (ValueError, KeyError, IndexError) as exc:
            return _error(400, f"fake server cannot answer this conversation: {exc!r}")
        texts = [] if fault == "no_choices" else result.samples or [result.content]
        size = int(self.options.big_body_mb * 1_000_000)
        if fault == "big_body" and self.options.big_body_in_content:
            texts = [_padded(text, size) for text in texts]
        choices = [
            {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
            for i, t in enumerate(texts)
        ]
        payload: dict[str, Any] = {
            "id": f"chatcmpl-{len(self.seen)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.options.model_id,
            "choices": choices,
        }
        if self.options.usage:
            usage = result.usage
            payload["usage"] = {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.prompt_tokens + usage.completion_tokens,
            }
        body = orjson.dumps(payload)
        if fault == "big_body" and not self.options.big_body_in_content:
            body += b" " * max(size - len(body), 0)  # trailing whitespace keeps it valid JSON
        return Reply(200, body)

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve HTTP/1.1 requests on one connection until either side closes it."""
        try:
            while True:
                # The whole head at once (one await, not one per line); EOF ends the loop.
                request_line, *lines = (
                    (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                )
                method, target, _version = request_line.split()
                headers: dict[str, str] = {}
                for line in filter(None, lines):
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                reply = await self.handle(method, target.split("?")[0], headers, body)
                if reply.status == 0:
                    break
                head = [
                    f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}",
                    f"Content-Type: {reply.content_type}",
                    f"Content-Length: {len(reply.body)}",
                    *(f"{k}: {v}" for k, v in reply.headers),
                ]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
        ):
            pass
        finally:
            writer.close()


async def serve(options: ServerOptions) -> None:
    """Listen on 127.0.0.1 forever; the first line on stdout names the base URL."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # a load test opens thousands of sockets
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    app = FakeServer(options)
    server = await asyncio.start_server(app.connection, "127.0.0.1", options.port, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    print(f"fake server listening on http://127.0.0.1:{port}/v1", flush=True)
    async with server:
        await server.serve_forever()


def options_from_flags(
    options: type[OptionsT], prog: str, argv: list[str] | None, **parser: Any
) -> OptionsT:
    """An options dataclass from command-line flags, one ``--flag`` per field.

    Each field's default sets the flag's type (a bool is ``--flag/--no-flag``) and its
    ``metadata["help"]`` the help text; both fake servers build their command line this way.
    """
    arguments = argparse.ArgumentParser(prog=prog, **parser)
    for f in dataclasses.fields(options):  # type: ignore[arg-type]
        kwargs: dict[str, Any] = {"default": f.default, "help": f.metadata["help"]}
        if isinstance(f.default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = type(f.default)
        arguments.add_argument("--" + f.name.replace("_", "-"), **kwargs)
    return options(**vars(arguments.parse_args(argv)))


def parse_options(argv: list[str] | None = None) -> ServerOptions:
    """Command-line flags, generated from :class:`ServerOptions`."""
    return options_from_flags(
        ServerOptions, "python -m testing.fake_server", argv, description=__doc__
    )


def option_args(options: ServerOptions) -> list[str]:
    """The command-line flags that reproduce ``options`` (only those off their default)."""
    args: list[str] = []
    for f in dataclasses.fields(ServerOptions):
        value = getattr(options, f.name)
        name = f.name.replace("_", "-")
        if value == f.default:
            continue
        if isinstance(value, bool):
            args.append(f"--{name}" if value else f"--no-{name}")
        else:
            args += [f"--{name}", str(value)]
    return args


@dataclass(frozen=True)
class RunningServer:
    """A server process started by :func:`running_fake_server`."""

    base_url: str
    """API root, ``http://127.0.0.1:PORT/v1``."""
    pid: int
    """Process id (the server is stopped by it)."""

    def stats(self) -> dict[str, Any]:
        """The server's ``/stats``: chat requests and injected faults by kind."""
        return httpx.get(self.base_url.removesuffix("/v1") + "/stats", timeout=10).json()

    def release(self) -> None:
        """Answer the requests held by ``hold_after``, and hold no more."""
        httpx.post(self.base_url.removesuffix("/v1") + "/release", timeout=10).raise_for_status()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for servers that need one given)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_ready(url: str, process: subprocess.Popen, timeout: float) -> None:
    """Poll ``url`` until it answers, the process dies, or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode} before answering")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout:g} s")


def stop_process(process: subprocess.Popen) -> None:
    """Terminate a child by its pid, then kill it if it does not exit promptly."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running_fake_server(
    env: dict[str, str] | None = None, timeout: float = 30.0, **options: Any
) -> Iterator[RunningServer]:
    """Start ``python -m testing.fake_server`` on a free port; stop it on exit.

    ``options`` are :class:`ServerOptions` fields; ``env`` adds environment variables (the
    key for ``api_key_env``), so a key never appears on a command line.
    """
    args = option_args(ServerOptions(**{"port": 0, **options}))
    with launched_server(
        "testing.fake_server", args, lambda url: url + "/models", env, timeout
    ) as (url, pid):
        yield RunningServer(base_url=url, pid=pid)


@contextmanager
def launched_server(
    module: str,
    args: list[str],
    ready_url: Callable[[str], str],
    env: dict[str, str] | None,
    timeout: float,
) -> Iterator[tuple[str, int]]:
    """Run ``python -m module *args``, a server that prints its URL; stop it by pid on exit.

    Yields (URL, pid) once ``ready_url(URL)`` answers. Every test server of this package
    starts this way.
    """
    command = [sys.executable, "-m", module, *args]
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, env={**os.environ, **(env or {})}
        )
        try:
            ready, _, _ = select.select([process.stdout], [], [], timeout)
            line = process.stdout.readline().decode() if ready and process.stdout else ""
            if "http://" not in line:
                stderr.seek(0)
                raise RuntimeError(f"{module} did not start: {stderr.read().decode()[-2000:]}")
            base_url = line.split()[-1]
            wait_until_ready(ready_url(base_url), process, timeout)
            yield base_url, process.pid
        finally:
            stop_process(process)


if __name__ == "__main__":
    with suppress(KeyboardInterrupt):
        run_async(serve(parse_options()))
