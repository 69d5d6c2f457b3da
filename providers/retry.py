"""Which HTTP failures are worth another attempt, and how long to wait before it.

Five kinds, each handled differently:

* ``rate_limit`` (429) and ``transient`` (5xx, 408, timeouts, refused or dropped connections):
  retried with exponential backoff and jitter, honouring the server's ``Retry-After``.
* ``malformed`` (a 2xx reply that is not usable JSON): retried, but only a few times, since a
  server that keeps sending garbage will not stop; then recorded as ``provider_error``.
* ``context_exceeded``: at long horizons running out of context is a *result*, so it is
  recorded at once and never retried (retrying it only burns time and money).
* ``fatal`` (other 4xx: bad key, unknown model, bad parameter): every later request would fail
  the same way, so the run stops.

Each failure also has a finer *class* for the record: the HTTP status (``429``, ``503``),
``timeout``, ``connection``, ``malformed``, ``no_choices`` or ``wrong_content_type``. Every
retry is counted under its class, so a summary says what a flaky endpoint actually did.

Classification is a set of small pure functions; the waiting is tenacity's, driven by a
per-request stop rule that also keeps the malformed-reply budget.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Literal, TypeVar

import aiohttp
import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential,
    wait_random,
)

ErrorKind = Literal["rate_limit", "transient", "malformed", "fatal", "context_exceeded"]

T = TypeVar("T")

MAX_ERROR_CHARS = 300
"""Server error text is cut to this length: enough for the reason, short enough for one line."""

_CONTEXT_ERROR = re.compile(
    r"context[ _]length|maximum context|context[ _]window|too many tokens|available context size"
    r"|prompt is too long|input is too long",
    re.IGNORECASE,
)


class RetryableError(Exception):
    """One failed attempt that another attempt may fix.

    ``kind`` decides the handling; ``reason`` is the finer failure class counted in records
    (see the module docstring) and defaults to the kind.
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        retry_after: float | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after = retry_after
        self.reason = reason or kind


class RetriesExhausted(Exception):
    """Every allowed attempt failed; ``last`` is the final failure."""

    def __init__(self, last: RetryableError, retries: int) -> None:
        super().__init__(last.message)
        self.last = last
        self.retries = retries


def is_context_error(text: str) -> bool:
    """True when an error text says the prompt does not fit the model's context."""
    return _CONTEXT_ERROR.search(text) is not None


def classify_status(status: int, error_text: str) -> ErrorKind | None:
    """The kind of an HTTP reply by status and error text; ``None`` for a success status.

    A context error is recognised by its text on any 4xx (servers disagree on the status:
    400, 413 or 422), and 413 counts as one even without text since only the prompt grows.
    """
    if 200 <= status < 300:
        return None
    if status == 429:
        return "rate_limit"
    if status == 413 or (400 <= status < 500 and is_context_error(error_text)):
        return "context_exceeded"
    if status >= 500 or status == 408:
        return "transient"
    return "fatal"


AUTH_STATUSES = frozenset({401, 403})
"""Refusals of the credentials: a fatal reply with one of these names ``model.api_key_env``."""


def fatal_field(status: int, otherwise: str = "model") -> str:
    """The config field a fatal HTTP reply is blamed on, for its one-line error.

    Refused credentials point at ``model.api_key_env``; anything else at ``otherwise``
    (the model section, or the setting whose request it was).
    """
    return "model.api_key_env" if status in AUTH_STATUSES else otherwise


def classify_exception(exc: BaseException) -> ErrorKind | None:
    """The kind of a transport failure; ``None`` for exceptions that are not the clients'.

    Both clients are understood: aiohttp (the adapter's transport) and httpx.
    """
    if isinstance(exc, (httpx.DecodingError, aiohttp.ContentTypeError)):
        return "malformed"
    if isinstance(exc, (httpx.TransportError, aiohttp.ClientError, asyncio.TimeoutError)):
        return "transient"  # timeouts, refused/dropped connections, protocol errors
    return None


def exception_reason(exc: BaseException) -> str:
    """The failure class of a transport exception: ``timeout``, ``malformed`` or ``connection``.

    A stalled server shows up as a read timeout; a dropped or refused connection, or a reply
    cut mid-way, as ``connection``.
    """
    if isinstance(exc, (httpx.TimeoutException, asyncio.TimeoutError)):
        return "timeout"  # aiohttp's ServerTimeoutError is an asyncio.TimeoutError too
    if isinstance(exc, (httpx.DecodingError, aiohttp.ContentTypeError)):
        return "malformed"
    return "connection"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay seconds or an HTTP date).

    Returns ``None`` for a missing or unreadable header; a date in the past means no wait.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max((when - now).total_seconds(), 0.0)


def one_line(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """Collapse whitespace and cut to ``limit`` characters, for error messages and logs."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def error_text(body: bytes) -> str:
    """The server's reason for an error reply, from the usual JSON shapes or the raw text."""
    try:
        data = json.loads(body)
    except ValueError:
        return one_line(body.decode("utf-8", "replace"))
    reason: Any = data
    if isinstance(data, dict):
        reason = data.get("error") or data.get("detail") or data.get("message") or data
        if isinstance(reason, dict):
            reason = reason.get("message") or reason
    return one_line(str(reason))


def server_error_text(response: httpx.Response) -> str:
    """:func:`error_text` of an httpx reply."""
    return error_text(response.content)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How persistent one request is."""

    max_attempts: int = 8
    """Attempts in total, the first included."""
    initial_wait: float = 1.0
    """Backoff before the first retry; doubles on every further retry."""
    max_wait: float = 60.0
    """Cap of the exponential backoff (before jitter)."""
    jitter: float = 1.0
    """Uniform random seconds added to each backoff, so parallel episodes do not retry in step."""
    max_retry_after: float = 120.0
    """Cap on a server's ``Retry-After`` (a server may ask for an hour)."""
    max_malformed_retries: int = 3
    """Retries allowed for unusable 2xx replies within one request."""


class BackoffWait:
    """Backoff with jitter, unless the server said how long to wait."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.backoff = wait_exponential(
            multiplier=policy.initial_wait, max=policy.max_wait
        ) + wait_random(0, policy.jitter)

    def __call__(self, state: RetryCallState) -> float:
        """Seconds to sleep before the next attempt."""
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RetryableError) and error.retry_after is not None:
            return min(error.retry_after, self.policy.max_retry_after)
        return self.backoff(state)


class AttemptBudget:
    """Stops after ``max_attempts`` attempts, or once malformed replies use up their budget.

    Stateful, so one instance serves exactly one request.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.malformed = 0

    def __call__(self, state: RetryCallState) -> bool:
        """True when the failed attempt in ``state`` must be the last one."""
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RetryableError) and error.kind == "malformed":
            self.malformed += 1
        return (
            state.attempt_number >= self.policy.max_attempts
            or self.malformed > self.policy.max_malformed_retries
        )


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    on_retry: Callable[[RetryableError], None] | None = None,
) -> tuple[T, int]:
    """Await ``attempt()`` until it returns; return its value and the number of retries.

    Only :class:`RetryableError` is retried; any other exception (a fatal error) passes
    through at once. Raises :class:`RetriesExhausted` when the policy gives up.
    ``on_retry`` gets every failure that is retried (not the last one of an exhausted
    request, which the caller sees in :class:`RetriesExhausted`), once, before the wait.
    """

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if on_retry is not None and isinstance(error, RetryableError):
            on_retry(error)

    try:  # the common case without tenacity's per-call set-up (45 us a request)
        return await attempt(), 0
    except RetryableError as exc:
        first: RetryableError | None = exc

    async def again() -> T:
        nonlocal first
        if first is not None:  # replay the first failure as tenacity's attempt 1
            error, first = first, None
            raise error
        return await attempt()

    retrying = AsyncRetrying(
        stop=AttemptBudget(policy),
        wait=BackoffWait(policy),
        retry=retry_if_exception_type(RetryableError),
        before_sleep=before_sleep,
        reraise=True,
    )
    attempts = 0
    try:
        async for attempt_state in retrying:
            attempts = attempt_state.retry_state.attempt_number
            with attempt_state:
                value = await again()
    except RetryableError as exc:
        raise RetriesExhausted(exc, retries=attempts - 1) from exc
    return value, attempts - 1
