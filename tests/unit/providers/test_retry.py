import sys
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest
from tenacity import RetryCallState

from providers.base import FatalProviderError
from providers.retry import (
    AttemptBudget,
    BackoffWait,
    RetriesExhausted,
    RetryableError,
    RetryPolicy,
    call_with_retries,
    classify_exception,
    classify_status,
    is_context_error,
    one_line,
    parse_retry_after,
)

NO_WAIT = RetryPolicy(max_attempts=5, initial_wait=0, max_wait=0, jitter=0, max_retry_after=0)


@pytest.mark.parametrize(
    ("status", "text", "kind"),
    [
        (200, "", None),
        (204, "", None),
        (429, "slow down", "rate_limit"),
        (500, "oops", "transient"),
        (502, "<html>bad gateway</html>", "transient"),
        (503, "", "transient"),
        (504, "", "transient"),
        (408, "", "transient"),
        (413, "", "context_exceeded"),
        (400, "This model's maximum context length is 4096 tokens", "context_exceeded"),
        (
            400,
            "the request exceeds the available context size, try increasing it",
            "context_exceeded",
        ),
        (400, "Requested tokens (5000) exceed context window of 4096", "context_exceeded"),
        (422, "error code context_length_exceeded", "context_exceeded"),
        (400, "prompt has too many tokens", "context_exceeded"),
        (400, "temperature must be <= 2", "fatal"),
        (401, "Incorrect API key provided", "fatal"),
        (403, "forbidden", "fatal"),
        (404, "The model `foo` does not exist", "fatal"),
    ],
)
def test_classify_status(status, text, kind):
    assert classify_status(status, text) == kind


def test_context_error_is_recognised_case_insensitively_and_not_in_unrelated_text():
    assert is_context_error("MAXIMUM CONTEXT LENGTH exceeded")
    assert not is_context_error("invalid value for top_p")


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx.ConnectError("refused"), "transient"),
        (httpx.ReadTimeout("slow"), "transient"),
        (httpx.ConnectTimeout("slow"), "transient"),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), "transient"),
        (httpx.ReadError("reset"), "transient"),
        (httpx.DecodingError("bad gzip"), "malformed"),
        (ValueError("not ours"), None),
    ],
)
def test_classify_exception(exc, kind):
    assert classify_exception(exc) == kind


NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 0.25 ", 0.25),
        ("-3", 0.0),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        (format_datetime(NOW - timedelta(seconds=30), usegmt=True), 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(header, seconds):
    assert parse_retry_after(header, now=NOW) == seconds


def test_one_line_collapses_and_truncates():
    assert one_line("a\n  b\tc") == "a b c"
    cut = one_line("x" * 1000, limit=50)
    assert len(cut) == 50 and cut.endswith("...")


def _state(attempt: int, error: BaseException) -> RetryCallState:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    try:
        raise error
    except BaseException:
        state.set_exception(sys.exc_info())
    return state


def test_wait_honours_retry_after_up_to_the_cap():
    wait = BackoffWait(RetryPolicy(initial_wait=1, max_wait=60, jitter=0, max_retry_after=10))
    assert wait(_state(1, RetryableError("rate_limit", "429", retry_after=3.5))) == 3.5
    assert wait(_state(1, RetryableError("rate_limit", "429", retry_after=3600))) == 10


def test_wait_backs_off_exponentially_with_bounded_jitter():
    wait = BackoffWait(RetryPolicy(initial_wait=1, max_wait=6, jitter=0.5))
    for attempt, base in [(1, 1), (2, 2), (3, 4), (4, 6), (9, 6)]:
        seconds = wait(_state(attempt, RetryableError("transient", "503")))
        assert base <= seconds <= base + 0.5


def test_budget_stops_at_max_attempts_and_counts_malformed_replies_separately():
    budget = AttemptBudget(RetryPolicy(max_attempts=10, max_malformed_retries=2))
    malformed = RetryableError("malformed", "not json")
    assert [budget(_state(n, malformed)) for n in (1, 2, 3)] == [False, False, True]
    budget = AttemptBudget(RetryPolicy(max_attempts=3, max_malformed_retries=2))
    transient = RetryableError("transient", "503")
    assert [budget(_state(n, transient)) for n in (1, 2, 3)] == [False, False, True]


def _script(*steps):
    """An attempt function that raises or returns the given steps in order."""
    calls = iter(steps)

    async def attempt():
        step = next(calls)
        if isinstance(step, BaseException):
            raise step
        return step

    return attempt


async def test_retries_until_success_and_counts_them():
    failures = [RetryableError("transient", "503"), RetryableError("rate_limit", "429")]
    value, retries = await call_with_retries(_script(*failures, "done"), NO_WAIT)
    assert (value, retries) == ("done", 2)


async def test_first_try_success_has_no_retries():
    assert await call_with_retries(_script("done"), NO_WAIT) == ("done", 0)


async def test_gives_up_after_max_attempts_with_the_last_error():
    errors = [RetryableError("transient", f"503 #{i}") for i in range(10)]
    with pytest.raises(RetriesExhausted) as info:
        await call_with_retries(_script(*errors), NO_WAIT)
    assert info.value.retries == NO_WAIT.max_attempts - 1
    assert info.value.last.message == f"503 #{NO_WAIT.max_attempts - 1}"


async def test_malformed_replies_get_their_own_smaller_budget():
    policy = RetryPolicy(max_attempts=10, initial_wait=0, jitter=0, max_malformed_retries=2)
    errors = [RetryableError("malformed", "not json")] * 10
    with pytest.raises(RetriesExhausted) as info:
        await call_with_retries(_script(*errors), policy)
    assert info.value.retries == 2


async def test_fatal_errors_are_not_retried():
    attempt = _script(FatalProviderError("401"), "never reached")
    with pytest.raises(FatalProviderError):
        await call_with_retries(attempt, NO_WAIT)
