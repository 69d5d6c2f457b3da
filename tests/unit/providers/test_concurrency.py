"""The adaptive limit, driven by hand: a fake clock, slots opened and closed in a set order."""

import asyncio
import math
import threading
import time

import pytest

from providers.concurrency import AdaptiveLimit, LimitState


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def open_slots(limit: AdaptiveLimit, n: int):
    """Enter n slots (each must be admitted at once) and return (context, slot) pairs."""
    opened = []
    for _ in range(n):
        context = limit.slot()
        opened.append((context, await asyncio.wait_for(context.__aenter__(), 1)))
    return opened


async def close(context, slot, outcome: str, status: int = 429, retry_after=None) -> None:
    if outcome == "ok":
        slot.succeeded()
    elif outcome == "overload":
        slot.overloaded(status, retry_after)
    await context.__aexit__(None, None, None)


async def test_slow_start_adds_one_slot_per_success_until_the_maximum():
    limit = AdaptiveLimit(2, 6, clock=Clock())
    for expected in (3, 4, 5, 6, 6):
        opened = await open_slots(limit, limit.limit)  # the limit fully in use
        await close(*opened[0], "ok")
        assert limit.limit == expected
        for pair in opened[1:]:
            await close(*pair, "other")  # neither success nor overload: no change


async def test_an_idle_limit_does_not_grow():
    limit = AdaptiveLimit(4, 64, clock=Clock())
    for _ in range(20):  # one request at a time: far below half the limit
        ((context, slot),) = await open_slots(limit, 1)
        await close(context, slot, "ok")
    assert limit.limit == 4


async def test_overload_halves_once_per_episode_then_returns_below_the_bound():
    clock = Clock()
    limit = AdaptiveLimit(1, 100, decrease=0.5, probe_interval=5.0, clock=clock)
    limit.value = 10.0
    opened = await open_slots(limit, 10)
    await close(*opened[9], "overload")  # the 10th in flight was one too many
    assert limit.limit == math.floor(10 * 0.5) and (limit.bound, limit.hold) == (9, 8)
    await close(*opened[8], "overload")  # admitted before the decrease: no second halving,
    assert limit.limit == 5 and (limit.bound, limit.hold) == (8, 7)  # but 9 was too many too
    # successes climb back one slot each, but only up to one below the bound
    for pair in opened[:8]:
        await close(*pair, "ok")
    assert limit.limit == 7
    opened = await open_slots(limit, 7)
    for pair in opened:
        await close(*pair, "ok")
    assert limit.limit == 7  # holding: the probe interval has not passed
    clock.now = 5.0
    opened = await open_slots(limit, 7)
    await close(*opened[0], "ok")
    assert limit.limit == 8 and limit.bound == 9  # one probe slot, and the bound moves on
    for pair in opened[1:]:
        await close(*pair, "other")


async def test_a_deep_overshoot_is_cut_below_the_bound_and_frozen_while_paused():
    clock = Clock()
    limit = AdaptiveLimit(1, 100, decrease=0.5, clock=clock)
    limit.value = 40.0
    opened = await open_slots(limit, 17)
    await close(*opened[16], "overload", 429, 1.0)  # the 17th was too many
    assert limit.limit == 15  # not 40 * 0.5 = 20, and one below the bound of 16
    for pair in opened[:16]:
        await close(*pair, "ok")  # sent before the overload, answered during the pause
    assert limit.limit == 15 and limit.bound == 16
    clock.now = 100.0  # long after the pause, past the probe interval
    opened = await open_slots(limit, 15)
    await close(*opened[0], "ok")
    assert limit.limit == 16  # a probe, one slot
    for pair in opened[1:]:
        await close(*pair, "other")


class Endpoint:
    """Admits a request while it holds fewer than ``room``; forgets one as soon as it replies.

    The client forgets it only when it has read the reply, so between the two the client
    counts one more than the endpoint: the in-transit reply that makes a bound inexact.
    """

    def __init__(self, room: int) -> None:
        self.room = room
        self.holding = 0
        self.overloads = 0

    def admit(self) -> bool:
        if self.holding >= self.room:
            self.overloads += 1
            return False
        self.holding += 1
        return True


async def test_a_bound_seen_through_a_reply_in_transit_is_not_probed_again_at_once():
    """At the end of slow start a reply is in transit: the endpoint (room 16) has already let
    go of it, the client still counts it, so the 17th request the client admits goes through
    and the 18th is the first rejected: the bound says 17, one more than the room. A limit
    that climbs back to the bound overloads again after the pause (and pauses again); the
    limit must hold at 16 until the probe interval has passed."""
    clock = Clock()
    endpoint = Endpoint(room=16)
    limit = AdaptiveLimit(4, 256, probe_interval=1.0, clock=clock)
    limit.value = 32.0  # slow start has overshot
    opened = await open_slots(limit, 16)
    for _ in opened:
        assert endpoint.admit()
    endpoint.holding -= 1  # the first request's reply is sent, not yet read by the client
    seventeenth = await open_slots(limit, 1)
    assert endpoint.admit()  # the endpoint holds 16 again: accepted
    (eighteenth,) = await open_slots(limit, 1)
    assert not endpoint.admit()
    await close(*eighteenth, "overload", 429, 1.0)
    assert limit.bound == 17
    for pair in opened + seventeenth:
        await close(*pair, "ok")
    endpoint.holding = 0
    clock.now = 1.5  # the pause has passed, the probe interval (20 x the pause) has not
    for _ in range(50):  # rounds of replies at whatever the limit allows
        clock.now = max(clock.now, limit.paused_until)  # wait out any new pause
        opened = await open_slots(limit, limit.limit)
        accepted = [pair for pair in opened if endpoint.admit()]
        for pair in opened:
            await close(*pair, "ok" if pair in accepted else "overload", 429, 1.0)
        endpoint.holding = 0
        clock.now += 0.05
    assert endpoint.overloads == 1 and limit.limit == 16


async def test_a_retry_after_pauses_every_new_request_until_it_has_passed():
    clock = Clock()
    limit = AdaptiveLimit(4, 8, clock=clock)
    (first, second) = await open_slots(limit, 2)
    await close(*first, "overload", 429, 30.0)
    held = limit.slot()
    waiting = asyncio.ensure_future(held.__aenter__())
    await settle()
    assert not waiting.done()  # a slot is free, but the endpoint is paused
    clock.now = 29.9
    limit._pause_over()  # a timer firing early changes nothing
    await settle()
    assert not waiting.done()
    clock.now = 30.0
    limit._pause_over()
    slot = await asyncio.wait_for(waiting, 1)
    assert limit.in_flight == 2 and slot.admitted == 2
    await close(*second, "ok")
    limit.close()


async def test_waiters_are_admitted_in_order_as_slots_free_up():
    limit = AdaptiveLimit(2, 2, clock=Clock())
    opened = await open_slots(limit, 2)
    contexts = [limit.slot() for _ in range(3)]
    waiting = [asyncio.ensure_future(c.__aenter__()) for c in contexts]
    await settle()
    assert not any(w.done() for w in waiting)
    await close(*opened[0], "other")
    await settle()
    assert [w.done() for w in waiting] == [True, False, False]
    await close(*opened[1], "other")
    await settle()
    assert [w.done() for w in waiting] == [True, True, False]
    assert limit.in_flight == 2


async def test_a_cancelled_waiter_gives_its_slot_back():
    limit = AdaptiveLimit(1, 1, clock=Clock())
    ((context, slot),) = await open_slots(limit, 1)
    held = limit.slot()
    waiting = asyncio.ensure_future(held.__aenter__())
    await settle()
    waiting.cancel()
    await settle()
    await close(context, slot, "other")
    assert limit.in_flight == 0
    (pair,) = await open_slots(limit, 1)  # the slot is free for the next request
    await close(*pair, "other")


def test_limits_must_be_ordered():
    with pytest.raises(ValueError, match="minimum <= maximum"):
        AdaptiveLimit(8, 4)


async def test_two_limits_on_one_shared_state_count_and_pause_as_one():
    """Two processes' limits, here two instances on one state and lock: one endpoint's limit.

    On the real clock: a waiter is woken by a timer, not by the test.
    """
    state = LimitState()
    state.reset(2, 1.0, time.monotonic())
    shared = (state, threading.Lock())
    first = AdaptiveLimit(2, 2, shared=shared)
    second = AdaptiveLimit(2, 2, shared=shared)

    [(context_a, slot_a)] = await open_slots(first, 1)
    [(context_b, slot_b)] = await open_slots(second, 1)
    assert state.in_flight == 2 and slot_b.admitted == 2  # counted across both
    context_w = first.slot()  # kept: a dropped context would release its slot when collected
    waiting = asyncio.ensure_future(context_w.__aenter__())
    await settle()
    assert not waiting.done()  # the limit of 2 is full, whichever instance holds the slots
    await close(context_b, slot_b, "ok")  # freed in the other instance: found by the poll
    assert (await asyncio.wait_for(waiting, 1)).admitted == 2

    await close(context_a, slot_a, "overload", retry_after=0.2)  # a pause, seen by both
    assert second.paused_until == first.paused_until > time.monotonic()
    assert second.bound == first.bound == 2  # learned by one, known to both (at the minimum)
    context_x = second.slot()
    blocked = asyncio.ensure_future(context_x.__aenter__())
    await settle()
    assert not blocked.done()  # a slot is free, but the endpoint is paused for both
    assert (await asyncio.wait_for(blocked, 1)).admitted == 2
    assert time.monotonic() >= second.paused_until
