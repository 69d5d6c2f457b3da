"""Adaptive concurrency: how many requests one endpoint gets at once (``run.concurrency=auto``).

One :class:`AdaptiveLimit` per endpoint, shared by every episode of a run, gates each HTTP
attempt. It is additive increase, multiplicative decrease (AIMD), with two refinements that
matter because an overload here costs a ``Retry-After`` pause of the whole endpoint (seconds),
not one lost packet:

* **Search, then hold.** Until the first overload every success while the limit is in use
  adds one slot (the limit doubles per round of replies, as TCP's slow start). An overload
  (429 or 503) of a request admitted as the n-th in flight shows that the endpoint holds at
  most ``n - 1`` at once: the *bound* (every overload can lower it). It is only a bound: the
  client counts a request until it has read the reply, the endpoint until it has sent it, so
  when replies arrive in a crowd (as at the end of slow start) the endpoint held fewer than
  the client counted, and a limit at the bound overloads again, which costs a second pause.
  The limit therefore *holds* one slot below the bound. On an overload it is multiplied by
  ``decrease`` (once per overload episode: replies to requests admitted before the decrease
  do not decrease it again) and never left above the hold level. Below that level it climbs
  back one slot per success; at it, one slot per ``probe_interval`` (at least twenty times
  the last pause), so the pauses that probing provokes stay a small share of the run, and an
  endpoint whose room grew is found again. Nothing grows while the endpoint is paused:
  replies that arrive then were sent before the overload and say nothing about its room.
* **A ``Retry-After`` pauses the endpoint.** No new request starts until it has passed;
  the requests already in flight finish (a server that rate-limits one request will
  rate-limit the next).

Why not a library: the well-kept limiters (``aiolimiter``, ``asyncio.Semaphore``) are fixed
rate or fixed size; Netflix's ``concurrency-limits`` (Java) has AIMD but no pause; the client
sits in one event loop, so the state is a few numbers and a queue of waiters.

With ``run.workers``, the worker processes share one limit: its numbers live in a
:class:`LimitState` in shared memory, changed under one lock, so the in-flight count, the
bound and a pause are the endpoint's, not a worker's. A worker's waiters are woken by its
own replies at once and, for slots that another worker freed, by a poll every
:data:`POLL_SECONDS` while they wait.

The limit over time is handed to ``on_event`` as :class:`LimitEvent` values (whenever the
integer limit changes, and on every overload and pause); the harness appends them to the
run's side file ``concurrency.jsonl`` (:class:`LimitLog`).
"""

from __future__ import annotations

import asyncio
import ctypes
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

LIMIT_LOG = "concurrency.jsonl"
"""Side file of a run with ``run.concurrency=auto``: one :class:`LimitEvent` per line."""

OVERLOAD_STATUSES = frozenset({429, 503})
"""Replies that mean "too much": they shrink the limit."""

POLL_SECONDS = 0.005
"""How often a worker's waiters look for a slot another worker freed (a shared limit only)."""

EventKind = Literal["start", "increase", "decrease", "overload", "pause", "end"]


class LimitEvent(BaseModel):
    """One line of ``concurrency.jsonl``: the limit at a moment, and why it was logged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    t: float
    """Seconds since the controller was created."""
    limit: int
    """Requests allowed in flight from this moment on."""
    in_flight: int
    """Requests in flight at this moment."""
    event: EventKind
    """``increase``/``decrease`` of the limit, an ``overload`` reply (429/503, also when it
    did not decrease the limit), a ``pause`` for a Retry-After, ``start`` and ``end``."""
    status: int | None = None
    """HTTP status of an overload."""
    pause_s: float | None = None
    """Length of a pause, in seconds."""
    worker: int = 0
    """Worker process that logged it (``run.workers``)."""


class Slot:
    """One admitted request; tell it how the request went before the block ends."""

    __slots__ = ("admitted", "epoch", "outcome", "retry_after", "status")

    def __init__(self, admitted: int, epoch: int) -> None:
        self.admitted = admitted
        self.epoch = epoch
        self.outcome: Literal["ok", "overload", "other"] = "other"
        self.status: int | None = None
        self.retry_after: float | None = None

    def succeeded(self) -> None:
        """The endpoint answered the request (any non-overload HTTP reply)."""
        self.outcome = "ok"

    def overloaded(self, status: int, retry_after: float | None) -> None:
        """The endpoint answered 429/503 (``retry_after``: its Retry-After, capped)."""
        self.outcome = "overload"
        self.status = status
        self.retry_after = retry_after


class LimitState(ctypes.Structure):
    """The numbers of one limit, in a struct so that worker processes can share them.

    ``bound`` and ``hold`` are 0 while unknown (they are at least 1 once known).
    """

    _fields_ = [
        ("value", ctypes.c_double),
        ("bound", ctypes.c_int64),
        ("hold", ctypes.c_int64),
        ("in_flight", ctypes.c_int64),
        ("epoch", ctypes.c_int64),
        ("paused_until", ctypes.c_double),
        ("last_probe", ctypes.c_double),
        ("probe_interval", ctypes.c_double),
        ("low", ctypes.c_int64),
        ("high", ctypes.c_int64),
    ]

    def reset(self, minimum: int, probe_interval: float, now: float) -> None:
        """The state of a new limit: at ``minimum``, nothing known, nothing in flight."""
        self.value = float(minimum)
        self.bound = self.hold = self.in_flight = self.epoch = 0
        self.paused_until = 0.0
        self.last_probe = now
        self.probe_interval = probe_interval
        self.low = self.high = minimum


PROBE_INTERVAL = 1.0
"""Seconds between probes above the hold level at least (more after a long pause)."""

SharedLimit = tuple[LimitState, Any]
"""One limit's state in shared memory and the lock that guards it (:func:`shared_limit`)."""


def shared_limit(context: Any, minimum: int) -> SharedLimit:
    """A new limit's state in shared memory and its lock, for the processes of one run.

    ``context`` is the ``multiprocessing`` context the processes are started from; pass the
    pair as ``AdaptiveLimit(shared=...)`` in each of them.
    """
    state = context.RawValue(LimitState)
    state.reset(minimum, PROBE_INTERVAL, time.monotonic())
    return state, context.Lock()


def _state_field(name: str, doc: str) -> property:
    def get(self: AdaptiveLimit) -> Any:
        return getattr(self.state, name)

    def set_(self: AdaptiveLimit, value: Any) -> None:
        setattr(self.state, name, value)

    return property(get, set_, doc=doc)


def _known_field(name: str, doc: str) -> property:
    """A field whose 0 means "not known yet", seen as None."""

    def get(self: AdaptiveLimit) -> int | None:
        return getattr(self.state, name) or None

    def set_(self: AdaptiveLimit, value: int | None) -> None:
        setattr(self.state, name, value or 0)

    return property(get, set_, doc=doc)


class AdaptiveLimit:
    """AIMD limit of requests in flight to one endpoint; see the module docstring.

    ``shared``: a :class:`LimitState` in shared memory and the lock that guards it, to share
    one limit with other processes (``run.workers``); None: a limit of this process alone.
    """

    value = _state_field("value", "The limit as a real number (it grows by fractions).")
    bound = _known_field(
        "bound", "At most this many in flight at once, as the overloads showed (None: none yet)."
    )
    hold = _known_field(
        "hold", "The level the limit climbs back to: one below ``bound``, raised by probes."
    )
    in_flight = _state_field("in_flight", "Requests admitted and not yet released.")
    epoch = _state_field(
        "epoch", "Bumped on each decrease; a slot admitted in an older epoch cannot decrease again."
    )
    paused_until = _state_field("paused_until", "No request starts before this clock time.")
    last_probe = _state_field("last_probe", "When the limit last probed above its hold level.")
    probe_interval = _state_field("probe_interval", "Seconds between probes.")
    low = _state_field("low", "The lowest limit so far.")
    high = _state_field("high", "The highest limit so far.")

    def __init__(
        self,
        minimum: int = 4,
        maximum: int = 256,
        *,
        decrease: float = 0.5,
        probe_interval: float = PROBE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[LimitEvent], None] | None = None,
        worker: int = 0,
        shared: SharedLimit | None = None,
    ) -> None:
        if not 1 <= minimum <= maximum:
            raise ValueError(f"need 1 <= minimum <= maximum (got {minimum}, {maximum})")
        self.minimum, self.maximum = minimum, maximum
        self.decrease = decrease
        self.base_probe_interval = probe_interval
        self.clock = clock
        self.on_event = on_event
        self.worker = worker
        self.started = clock()
        if shared is None:
            self.state = LimitState()
            self.state.reset(minimum, probe_interval, self.started)
            self._lock: AbstractContextManager[Any] = nullcontext()
        else:
            self.state, self._lock = shared  # reset once, by whoever made it
        self.shared = shared is not None
        self._waiters: deque[asyncio.Future[int]] = deque()
        self._wake: asyncio.TimerHandle | None = None
        self.closers: list[Callable[[], None]] = []
        """Called by :meth:`close` after the last event (the side file's)."""
        self._log("start")

    @property
    def limit(self) -> int:
        """Requests allowed in flight now."""
        return int(self.value)

    def _log(self, event: EventKind, status: int | None = None, pause: float | None = None):
        if self.on_event is not None:
            self.on_event(
                LimitEvent(
                    t=round(self.clock() - self.started, 4),
                    limit=self.limit,
                    in_flight=self.in_flight,
                    event=event,
                    status=status,
                    pause_s=pause,
                    worker=self.worker,
                )
            )

    def _set(self, value: float, event: EventKind) -> None:
        before = self.limit
        self.value = min(max(value, float(self.minimum)), float(self.maximum))
        if self.limit != before:
            self.low, self.high = min(self.low, self.limit), max(self.high, self.limit)
            self._log(event)

    def _can_start(self) -> bool:
        return self.in_flight < self.limit and self.clock() >= self.paused_until

    def _admit_waiters(self) -> None:
        """Wake the oldest waiters while slots are free; arm a timer for the pause's end.

        With a shared limit, waiters that find no slot look again after
        :data:`POLL_SECONDS` (another worker's reply frees a slot without telling this one).
        """
        with self._lock:
            while self._waiters and self._can_start():
                waiter = self._waiters.popleft()
                if not waiter.done():
                    self.in_flight += 1  # reserved for the waiter: its admission count
                    waiter.set_result(self.in_flight)
            if not self._waiters or self._wake is not None:
                return
            delay = self.paused_until - self.clock()
            if self.shared:
                delay = max(delay, POLL_SECONDS)  # another worker's reply frees a slot silently
            elif delay <= 0:
                return  # a reply of this process will free the next slot
            self._wake = asyncio.get_running_loop().call_later(delay, self._pause_over)

    def _pause_over(self) -> None:
        self._wake = None
        self._admit_waiters()

    async def _acquire(self) -> Slot:
        with self._lock:
            admitted = 0
            if self._can_start() and not self._waiters:
                self.in_flight += 1
                admitted = self.in_flight
            epoch = self.epoch
        if not admitted:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            self._admit_waiters()
            try:
                admitted = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    with self._lock:
                        self.in_flight -= 1  # admitted, then cancelled before it could start
                    self._admit_waiters()
                raise
            epoch = self.epoch
        return Slot(admitted=admitted, epoch=epoch)

    def _release(self, slot: Slot) -> None:
        with self._lock:
            busy = self.in_flight  # this request included
            self.in_flight -= 1
            if slot.outcome == "ok":
                self._on_success(slot, busy)
            elif slot.outcome == "overload":
                self._on_overload(slot)
        self._admit_waiters()

    def _on_success(self, slot: Slot, busy: int) -> None:
        now = self.clock()
        if busy < self.value / 2 or now < self.paused_until:
            return  # the limit is not what holds requests back, or the endpoint is paused
        if self.hold is None or self.value + 1 <= self.hold:
            self._set(self.value + 1, "increase")
        elif self.value < self.hold:
            self._set(float(self.hold), "increase")
        elif now - self.last_probe >= self.probe_interval:
            self.last_probe = now
            self.hold = self.limit + 1  # until an overload says otherwise
            self.bound = self.hold + 1  # a probe tests the room beyond the old bound
            self._set(self.value + 1, "increase")

    def _on_overload(self, slot: Slot) -> None:
        pause = slot.retry_after
        self._log("overload", status=slot.status)
        if pause:
            self.paused_until = max(self.paused_until, self.clock() + pause)
            self.probe_interval = max(self.base_probe_interval, 20 * pause)
            self._log("pause", pause=pause)
        bound = max(slot.admitted - 1, self.minimum)
        self.bound = bound if self.bound is None else min(self.bound, bound)
        self.hold = max(self.bound - 1, self.minimum)
        self.last_probe = self.clock()
        target = self.value
        if slot.epoch == self.epoch:  # the first reply of this overload episode
            self.epoch += 1
            target = math.floor(self.value * self.decrease)
        self._set(min(target, float(self.hold)), "decrease")

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        """Wait for a free slot (and the end of any pause); hold it for the block."""
        slot = await self._acquire()
        try:
            yield slot
        finally:
            self._release(slot)

    def close(self) -> None:
        """Log the final limit and cancel the pause timer."""
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        self._log("end")
        for close in self.closers:
            close()
        self.closers.clear()


class LimitLog:
    """Appends :class:`LimitEvent` lines to a run's ``concurrency.jsonl``, one write per line.

    Lines are short and written with ``O_APPEND``, so worker processes can share the file.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LIMIT_LOG
        self._file = open(self.path, "a", buffering=1)  # noqa: SIM115 - closed by close()

    def __call__(self, event: LimitEvent) -> None:
        """Write one event."""
        self._file.write(event.model_dump_json(exclude_none=True) + "\n")

    def close(self) -> None:
        """Close the file."""
        self._file.close()


def read_limit_log(run_dir: Path) -> Iterator[LimitEvent]:
    """The events of a run's ``concurrency.jsonl`` (none when the run had a fixed limit).

    A torn last line (a killed run) is skipped.
    """
    path = run_dir / LIMIT_LOG
    if not path.exists():
        return
    with open(path) as handle:
        for line in handle:
            if line.endswith("\n"):
                yield LimitEvent.model_validate_json(line)


def attach_adaptive_limit(
    provider: object,
    run_dir: Path,
    *,
    minimum: int,
    maximum: int,
    worker: int = 0,
    shared: SharedLimit | None = None,
) -> AdaptiveLimit:
    """Gate ``provider``'s requests by a new limit that logs to ``run_dir``'s side file.

    ``shared``: the limit's state and lock from :func:`shared_limit` (worker processes).
    Raises ``ValueError`` (one line naming the field) for a provider without an endpoint.
    """
    log = LimitLog(run_dir)
    limit = AdaptiveLimit(minimum, maximum, on_event=log, worker=worker, shared=shared)
    if not provider.gate_requests(limit):  # type: ignore[attr-defined]
        log.close()
        raise ValueError(
            f"run.concurrency: auto adapts to an HTTP endpoint, and {provider!r} has none "
            "(allowed here: a number)"
        )
    limit.closers.append(log.close)
    return limit
