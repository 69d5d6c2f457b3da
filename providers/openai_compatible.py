"""Any server that speaks the OpenAI chat-completions API.

That covers OpenAI, OpenRouter, vLLM, SGLang, llama.cpp's server and Ollama. Plain ``aiohttp``
rather than the ``openai`` SDK, so the request body is exactly what the config says, the
connections are sized to the run's concurrency, a request costs little client CPU (a GPU
server answers thousands a second), and every failure goes through :mod:`providers.retry`'s
classification. With ``run.concurrency=auto`` every attempt also waits for a slot of the
endpoint's :class:`providers.concurrency.AdaptiveLimit`.

The API key is read from the environment variable *named* in the config, once, at creation;
it lives only in the client's ``Authorization`` header and is scrubbed from any error text a
server echoes back, so it never reaches a record, a log line or an exception message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import ssl
import time
from collections import Counter
from typing import Any

import aiohttp
import certifi
import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator
from yarl import URL

from providers import retry
from providers.base import ChatResult, FatalProviderError, Message, Provider, Sampling, Usage
from providers.concurrency import OVERLOAD_STATUSES, AdaptiveLimit, Slot
from providers.local_models import split_reasoning
from providers.retry import RetriesExhausted, RetryableError

logger = logging.getLogger(__name__)

FDS_BESIDES_CONNECTIONS = 256
"""Open files a run needs besides its connections: records, logs, the event loop, libraries."""
CHARS_PER_TOKEN = 4.0
"""Approximation used only when a server reports no usage (the record then says estimated)."""


class OpenAICompatibleConfig(BaseModel):
    """Connection and retry settings of an OpenAI-compatible endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    """Model name sent as ``model`` in every request."""
    base_url: str = "http://127.0.0.1:8000/v1"
    """API root, up to and including the version segment (``.../v1``)."""
    api_key_env: str | None = None
    """Name of the environment variable holding the key; empty for servers without auth."""
    connect_timeout: float = Field(10.0, gt=0)
    """Seconds to establish a connection."""
    read_timeout: float = Field(600.0, gt=0)
    """Seconds to wait for the reply once sent (long: a local model may think for minutes)."""
    preflight_timeout: float = Field(10.0, gt=0)
    """Seconds the pre-run check of ``/models`` may take."""
    max_attempts: int = Field(8, ge=1)
    """Attempts per request in total, including the first."""
    backoff_initial: float = Field(1.0, ge=0)
    """Seconds before the first retry; doubles per further retry."""
    backoff_max: float = Field(60.0, ge=0)
    """Cap of the exponential backoff, in seconds."""
    backoff_jitter: float = Field(1.0, ge=0)
    """Random seconds (uniform) added to each backoff."""
    max_retry_after: float = Field(120.0, ge=0)
    """Cap on a server's ``Retry-After``, in seconds."""
    max_malformed_retries: int = Field(3, ge=0)
    """Retries allowed when a 2xx reply is unusable (not JSON, no choices)."""
    send_seed: bool = True
    """Send the per-request ``seed``; turn off for servers that reject the field."""

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https:// (got {value!r})")
        return value.rstrip("/")

    def retry_policy(self) -> retry.RetryPolicy:
        """The retry settings as :mod:`providers.retry` takes them."""
        return retry.RetryPolicy(
            max_attempts=self.max_attempts,
            initial_wait=self.backoff_initial,
            max_wait=self.backoff_max,
            jitter=self.backoff_jitter,
            max_retry_after=self.max_retry_after,
            max_malformed_retries=self.max_malformed_retries,
        )


def build_request_body(
    name: str, messages: list[Message], sampling: Sampling, *, send_seed: bool = True
) -> dict[str, Any]:
    """The JSON body of one chat-completions request.

    Optional fields are left out when unset (``stop``, ``seed``, ``n`` = 1) because some
    servers reject them. ``extra_body`` is merged last, so it may override any field.
    """
    body: dict[str, Any] = {
        "model": name,
        "messages": [m.as_dict() for m in messages],
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
    }
    if sampling.n > 1:
        body["n"] = sampling.n
    if send_seed and sampling.seed is not None:
        body["seed"] = sampling.seed
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    return {**body, **sampling.extra_body}


def encode_body(body: dict[str, Any]) -> bytes:
    """The request's bytes: compact UTF-8 JSON, encoded by orjson.

    Every turn resends the whole conversation, so this runs over a growing body on every
    request; orjson does it in about a third of the stdlib's time. The bytes are those of
    ``json.dumps(body, ensure_ascii=False, separators=(",", ":"))`` (strings escaped alike,
    non-string keys turned into strings) except floats that the stdlib writes with an
    exponent (``1e-05``; orjson writes ``0.00001``) and NaN, which orjson writes as ``null``
    where the stdlib would refuse it. What orjson cannot encode (integers beyond 64 bits)
    goes through the stdlib instead of failing.
    """
    try:
        return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def parse_usage(payload: dict[str, Any], prompt_chars: int, completion_chars: int) -> Usage:
    """Token counts as reported, or estimated from characters when the server sent none."""
    usage = payload.get("usage")
    if not isinstance(usage, dict) or not isinstance(usage.get("prompt_tokens"), int):
        return Usage(
            prompt_tokens=round(prompt_chars / CHARS_PER_TOKEN),
            completion_tokens=round(completion_chars / CHARS_PER_TOKEN),
            estimated=True,
        )
    completion_details = usage.get("completion_tokens_details") or {}
    prompt_details = usage.get("prompt_tokens_details") or {}
    return Usage(
        prompt_tokens=usage["prompt_tokens"],
        completion_tokens=_int(usage.get("completion_tokens")),
        reasoning_tokens=_int(completion_details.get("reasoning_tokens")),
        cached_tokens=_int(prompt_details.get("cached_tokens")),
    )


def parse_response(payload: Any, *, prompt_chars: int) -> ChatResult:
    """Turn a chat-completions reply into a :class:`ChatResult`.

    Reasoning comes from the message's ``reasoning_content`` (vLLM, SGLang, DeepSeek) or
    ``reasoning`` (OpenRouter, Ollama) field, else from ``<think>`` blocks in the content.
    Raises :class:`RetryableError` (``malformed``) when there is no usable first choice.
    """
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not isinstance(choices, list) or not choices:
        raise RetryableError("malformed", "reply has no choices", reason="no_choices")
    texts: list[str] = []
    reasonings: list[str] = []
    for choice in choices:
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise RetryableError("malformed", "reply choice has no message")
        content = message.get("content") or ""
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        visible, think = split_reasoning(content if isinstance(content, str) else str(content))
        texts.append(visible)
        reasonings.append(reasoning if isinstance(reasoning, str) and reasoning else think or "")
    completion_chars = sum(map(len, texts)) + sum(map(len, reasonings))
    return ChatResult(
        content=texts[0],
        reasoning=reasonings[0] or None,
        samples=texts if len(texts) > 1 else [],
        usage=parse_usage(payload, prompt_chars, completion_chars),
        finish_reason=choices[0].get("finish_reason"),
        model_id=payload.get("model") if isinstance(payload.get("model"), str) else None,
    )


class Connections:
    """One ``aiohttp`` session whose connector holds ``concurrency`` connections.

    aiohttp's connector hands out idle connections from a per-host queue and parses replies
    with a C parser, so a request costs the same CPU whatever the pool size (measured by
    ``bench/bench_overhead.py --clients``: 0.5 ms against httpx's 2-7 ms per request). The
    session is built on first use, inside the running event loop, as aiohttp requires.
    The certifi CA bundle is loaded only for an ``https`` endpoint (50 ms of CPU per process,
    paid again by every worker).
    """

    def __init__(
        self,
        concurrency: int,
        *,
        headers: dict[str, str],
        timeout: aiohttp.ClientTimeout,
        tls: bool = True,
    ):
        self.concurrency = concurrency
        self.tls = tls
        self.headers = {"Content-Type": "application/json", **headers}
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The session, created on first use."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.concurrency,
                limit_per_host=0,
                ssl=ssl.create_default_context(cafile=certifi.where()) if self.tls else True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self.headers,
                timeout=self.timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
                raise_for_status=False,
            )
        return self._session

    async def aclose(self) -> None:
        """Close every connection."""
        if self._session is not None:
            await self._session.close()
            self._session = None


class OpenAICompatibleProvider(Provider):
    """See the module docstring."""

    def __init__(self, config: OpenAICompatibleConfig, api_key: str | None, concurrency: int):
        self.config = config
        self._api_key = api_key
        self._connections = Connections(
            concurrency,
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=config.connect_timeout, sock_read=config.read_timeout
            ),
            tls=config.base_url.startswith("https://"),
        )
        self._policy = config.retry_policy()
        # Parsed once: aiohttp parses a ``str`` URL anew on every request.
        self._url = URL(f"{config.base_url}/chat/completions")
        self._limit: AdaptiveLimit | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config.name!r}, {self.config.base_url!r})"

    @property
    def label(self) -> str:
        """See :attr:`Provider.label`: the model name without an organisation prefix."""
        return self.config.name.rsplit("/", 1)[-1]

    def gate_requests(self, limit: AdaptiveLimit) -> bool:
        """See :meth:`Provider.gate_requests`: every attempt waits for a slot of ``limit``."""
        self._limit = limit
        return True

    def _scrub(self, text: str) -> str:
        """Remove the key from text a server sent back (some echo it in auth errors)."""
        return text.replace(self._api_key, "***") if self._api_key else text

    async def preflight(self) -> None:
        """See :meth:`Provider.preflight`.

        Fails only on what will certainly repeat: no connection, or the key refused. A 404
        (no ``/models`` route) and a name missing from the list are tolerated, because many
        servers serve any name or aliases (llama.cpp, Ollama tags, routers); that is logged.
        """
        url = f"{self.config.base_url}/models"
        timeout = aiohttp.ClientTimeout(total=self.config.preflight_timeout)
        try:
            async with self._connections.session().get(url, timeout=timeout) as response:
                status, body = response.status, await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            reason = self._scrub(retry.one_line(f"{type(exc).__name__}: {exc}"))
            raise FatalProviderError(
                f"model.base_url: cannot connect to {self.config.base_url} ({reason})"
            ) from None
        if status in retry.AUTH_STATUSES:
            field = self.config.api_key_env or "(empty)"
            raise FatalProviderError(
                f"model.api_key_env: {url} refused the credentials from {field} "
                f"(HTTP {status}: {self._scrub(retry.error_text(body))})"
            )
        if status != 200:
            logger.warning("%s answered HTTP %s; continuing", url, status)
            return
        try:
            ids = [m.get("id") for m in json.loads(body).get("data", [])]
        except (ValueError, AttributeError):
            return
        if ids and self.config.name not in ids:
            logger.warning("model %r not listed by %s (lists %s)", self.config.name, url, ids[:5])

    async def chat(self, messages: list[Message], sampling: Sampling) -> ChatResult:
        """See :meth:`Provider.chat`."""
        body = encode_body(
            build_request_body(
                self.config.name, messages, sampling, send_seed=self.config.send_seed
            )
        )
        prompt_chars = sum([len(m.content) for m in messages])
        reasons: Counter[str] = Counter()
        started = time.monotonic()
        try:
            result, retries = await retry.call_with_retries(
                lambda: self._attempt(body, prompt_chars),
                self._policy,
                on_retry=lambda error: reasons.update((error.reason,)),
            )
        except RetriesExhausted as exc:
            return ChatResult(
                outcome="provider_error",
                error=f"{exc.last.message} (gave up after {exc.retries + 1} attempts)",
                retries=exc.retries,
                retry_reasons=dict(reasons),
                latency_s=time.monotonic() - started,
            )
        result.retries = retries
        result.retry_reasons = dict(reasons)
        result.latency_s = time.monotonic() - started
        return result

    async def _attempt(self, body: bytes, prompt_chars: int) -> ChatResult:
        """One request, through the adaptive limit if there is one."""
        if self._limit is None:
            return await self._send(body, prompt_chars, None)
        async with self._limit.slot() as slot:
            return await self._send(body, prompt_chars, slot)

    async def _send(self, body: bytes, prompt_chars: int, slot: Slot | None) -> ChatResult:
        """One request; raises :class:`RetryableError` for anything worth another try."""
        url = self._url
        try:
            async with self._connections.session().post(url, data=body) as response:
                status = response.status
                content_type = response.headers.get("Content-Type", "")
                retry_after_header = response.headers.get("Retry-After")
                raw = await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            kind = retry.classify_exception(exc) or "transient"
            reason = self._scrub(retry.one_line(f"{type(exc).__name__}: {exc}"))
            raise RetryableError(kind, reason, reason=retry.exception_reason(exc)) from None
        reason = "" if status < 400 else self._scrub(retry.error_text(raw))
        kind = retry.classify_status(status, reason)
        retry_after = retry.parse_retry_after(retry_after_header)
        if slot is not None:
            if status in OVERLOAD_STATUSES:
                capped = (
                    None if retry_after is None else min(retry_after, self._policy.max_retry_after)
                )
                slot.overloaded(status, capped)
            else:
                slot.succeeded()
        if kind is None:
            return self._parse_ok(content_type, raw, prompt_chars)
        message = f"HTTP {status}: {reason}"
        if kind == "context_exceeded":
            return ChatResult(outcome="context_exceeded", error=message)
        if kind == "fatal":
            field = retry.fatal_field(status)
            raise FatalProviderError(f"{field}: {url} rejected the request ({message})")
        raise RetryableError(kind, message, retry_after=retry_after, reason=str(status))

    def _parse_ok(self, content_type: str, raw: bytes, prompt_chars: int) -> ChatResult:
        if "json" not in content_type:
            raise RetryableError(
                "malformed",
                f"reply is {content_type or 'untyped'}, not JSON",
                reason="wrong_content_type",
            )
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise RetryableError("malformed", "reply body is not valid JSON") from None
        return parse_response(payload, prompt_chars=prompt_chars)

    async def aclose(self) -> None:
        """See :meth:`Provider.aclose`."""
        await self._connections.aclose()


def ensure_open_file_limit(connections: int) -> None:
    """Raise the soft open-file limit so that every connection of the run can be open at once.

    Past the limit a connection fails with "Too many open files", which looks like a flaky
    server (retried and counted as ``connection``) while the server is fine; a common default
    soft limit is 1024. Only the soft limit is raised, which needs no privilege; a hard limit
    below the need is a config error.
    """
    needed = connections + FDS_BESIDES_CONNECTIONS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise ValueError(
            f"run.concurrency: {connections} connections need about {needed} open files, but "
            f"this process may open at most {hard} (raise it with ulimit -n, or lower "
            "run.concurrency)"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def read_api_key(variable: str | None) -> str | None:
    """The key from the environment variable named in the config (None without one)."""
    if not variable:
        return None
    key = os.environ.get(variable, "").strip()
    if not key:
        raise ValueError(f"model.api_key_env: environment variable {variable} is not set")
    return key


def create(config: dict[str, Any], *, concurrency: int) -> OpenAICompatibleProvider:
    """Registry factory (the caller turns a ``ValidationError`` into a one-line message)."""
    settings = OpenAICompatibleConfig.model_validate(config)
    key = read_api_key(settings.api_key_env)
    ensure_open_file_limit(concurrency)
    return OpenAICompatibleProvider(settings, key, concurrency)
