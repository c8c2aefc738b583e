"""One suite for every CounterBackend: fixed vs sliding windows, all-or-nothing, refunds, concurrency."""

from __future__ import annotations

import asyncio
import datetime

import pytest

from switchpoint.state import Charge, StateBackend

UTC = datetime.UTC


def at(hour: int, minute: int, second: float = 0) -> float:
    """A wall-clock time on a fixed day, as Unix seconds."""
    whole = int(second)
    moment = datetime.datetime(2026, 3, 2, hour, minute, whole, tzinfo=UTC)
    return moment.timestamp() + (second - whole)


def rate(key: str, technique: str, limit: float = 10, window_s: int = 600, amount: float = 1) -> Charge:
    assert technique in ("fixed", "sliding")
    return Charge(key, amount, limit, window_s, technique)  # type: ignore[arg-type]


async def burst(backend: StateBackend, charge: Charge, count: int, now: float) -> list[bool]:
    return [(await backend.consume([charge], now=now))[0].allowed for _ in range(count)]


async def test_cloudflare_example_fixed_lets_both_batches_through(backend: StateBackend) -> None:
    """10 per 10 minutes: 10 at 12:09 and 10 at 12:11 fall in two calendar windows (12:00, 12:10)."""
    charge = rate("cf-fixed", "fixed")
    assert await burst(backend, charge, 10, at(12, 9)) == [True] * 10
    assert await burst(backend, charge, 1, at(12, 9, 59)) == [False]
    assert await burst(backend, charge, 10, at(12, 11)) == [True] * 10


async def test_cloudflare_example_sliding_refuses_the_second_batch(backend: StateBackend) -> None:
    charge = rate("cf-sliding", "sliding")
    assert await burst(backend, charge, 10, at(12, 9)) == [True] * 10
    assert await burst(backend, charge, 10, at(12, 11)) == [False] * 10
    # The 12:09:00 sub-window (10 s long) leaves the last 10 minutes at 12:19:10, not before.
    assert await burst(backend, charge, 1, at(12, 19, 9.9)) == [False]
    assert await burst(backend, charge, 10, at(12, 19, 10)) == [True] * 10


async def test_sliding_never_overshoots_an_exact_log(backend: StateBackend) -> None:
    """Requests spread over the window: at every instant, the last 600 s never hold more than the limit."""
    charge = rate("spread", "sliding", limit=5)
    admitted: list[float] = []
    start = at(12, 0)
    for step in range(240):  # one request every 7 s for 28 minutes
        now = start + 7 * step
        if (await backend.consume([charge], now=now))[0].allowed:
            admitted.append(now)
        assert sum(1 for t in admitted if now - 600 < t <= now) <= 5
    assert len(admitted) >= 10  # it does admit again as the window slides


async def test_fixed_decision_reports_remaining_and_reset(backend: StateBackend) -> None:
    charge = rate("fixed-headers", "fixed", limit=3, window_s=60)
    first = (await backend.consume([charge], now=at(12, 0, 15)))[0]
    assert (first.allowed, first.limit, first.remaining, first.reset_s) == (True, 3, 2, 45)
    assert first.at == pytest.approx(at(12, 0, 15))
    await backend.consume([charge], now=at(12, 0, 16))
    await backend.consume([charge], now=at(12, 0, 17))
    refused = (await backend.consume([charge], now=at(12, 0, 50)))[0]
    assert (refused.allowed, refused.remaining, refused.reset_s) == (False, 0, 10)


async def test_sliding_decision_reports_when_capacity_frees(backend: StateBackend) -> None:
    charge = rate("sliding-headers", "sliding", limit=2, window_s=60)  # 1 s sub-windows
    first = (await backend.consume([charge], now=at(12, 0, 10.5)))[0]
    assert (first.allowed, first.remaining, first.reset_s) == (True, 1, 60.5)
    await backend.consume([charge], now=at(12, 0, 20))
    refused = (await backend.consume([charge], now=at(12, 0, 30)))[0]
    assert (refused.allowed, refused.remaining) == (False, 0)
    assert refused.reset_s == pytest.approx(41)  # the 12:00:10 sub-window leaves at 12:01:11


async def test_consume_is_all_or_nothing_across_charges(backend: StateBackend) -> None:
    roomy = rate("multi-a", "fixed", limit=10)
    tight = rate("multi-b", "sliding", limit=1)
    now = at(9, 0)
    assert [d.allowed for d in await backend.consume([roomy, tight], now=now)] == [True, True]
    decisions = await backend.consume([roomy, tight], now=now)
    assert [d.allowed for d in decisions] == [True, False]
    assert decisions[0].remaining == 9  # the refused call added nothing to the roomy counter either
    assert (await backend.consume([roomy], now=now))[0].remaining == 8


async def test_float_costs_add_up_without_rounding_refusals(backend: StateBackend) -> None:
    charge = Charge("cents", 0.1, 0.3, 3600, "sliding")
    now = at(10, 0)
    assert await burst(backend, charge, 3, now) == [True] * 3
    assert not (await backend.consume([charge], now=now))[0].allowed


async def test_zero_amount_passes_while_something_is_left(backend: StateBackend) -> None:
    probe = Charge("zero", 0, 1, 60, "fixed")
    spend = Charge("zero", 0.6, 1, 60, "fixed")
    now = at(10, 0)
    assert (await backend.consume([probe], now=now))[0].allowed
    assert (await backend.consume([spend], now=now))[0].allowed
    assert (await backend.consume([probe], now=now))[0].allowed
    assert (await backend.consume([Charge("zero", 0.4, 1, 60, "fixed")], now=now))[0].allowed
    assert not (await backend.consume([probe], now=now))[0].allowed


async def test_an_amount_over_the_limit_never_fits(backend: StateBackend) -> None:
    decision = (await backend.consume([Charge("huge", 5, 2, 60, "sliding")], now=at(10, 0)))[0]
    assert not decision.allowed
    assert decision.reset_s == 60


@pytest.mark.parametrize("technique", ["fixed", "sliding"])
async def test_refund_gives_back_within_the_same_window(backend: StateBackend, technique: str) -> None:
    charge = rate(f"refund-{technique}", technique, limit=5, amount=5)
    now = at(10, 0, 30)
    decision = (await backend.consume([charge], now=now))[0]
    await backend.refund([rate(charge.key, technique, amount=3)], at=decision.at, now=now + 5)
    assert (await backend.consume([rate(charge.key, technique, limit=5, amount=3)], now=now + 6))[0].allowed
    assert not (await backend.consume([rate(charge.key, technique, limit=5, amount=1)], now=now + 7))[0].allowed


@pytest.mark.parametrize("technique", ["fixed", "sliding"])
async def test_refund_never_goes_below_zero(backend: StateBackend, technique: str) -> None:
    charge = rate(f"floor-{technique}", technique, limit=3, amount=1)
    decision = (await backend.consume([charge], now=at(10, 0)))[0]
    await backend.refund([rate(charge.key, technique, amount=50)], at=decision.at, now=at(10, 0, 1))
    assert await burst(backend, charge, 4, at(10, 0, 2)) == [True, True, True, False]


async def test_refund_after_the_window_closed_is_dropped(backend: StateBackend) -> None:
    charge = rate("late-refund", "fixed", limit=2, window_s=60)
    old = (await backend.consume([charge], now=at(10, 0, 30)))[0]
    await backend.consume([charge, charge], now=at(10, 1, 5))  # both fit the new window
    await backend.refund([charge], at=old.at, now=at(10, 1, 6))  # belongs to 10:00, which is over
    assert not (await backend.consume([charge], now=at(10, 1, 7)))[0].allowed


@pytest.mark.parametrize("technique", ["fixed", "sliding"])
async def test_negative_refund_charges_without_a_check(backend: StateBackend, technique: str) -> None:
    charge = rate(f"extra-{technique}", technique, limit=5, amount=4)
    decision = (await backend.consume([charge], now=at(10, 0)))[0]
    await backend.refund([rate(charge.key, technique, amount=-3)], at=decision.at, now=at(10, 0, 1))
    probe = (await backend.consume([rate(charge.key, technique, limit=5, amount=0)], now=at(10, 0, 2)))[0]
    assert (probe.allowed, probe.remaining) == (False, 0)  # 7 spent of 5: over, and nothing left


@pytest.mark.parametrize("technique", ["fixed", "sliding"])
async def test_concurrent_consumers_get_exactly_the_limit(backend: StateBackend, technique: str) -> None:
    charge = rate(f"race-{technique}", technique, limit=50, window_s=3600)
    now = at(11, 0)
    results = await asyncio.gather(*(backend.consume([charge], now=now) for _ in range(200)))
    assert sum(d[0].allowed for d in results) == 50


async def test_keys_windows_and_techniques_are_separate_counters(backend: StateBackend) -> None:
    now = at(11, 0)
    charges = [
        Charge("k1", 1, 1, 60, "fixed"),
        Charge("k2", 1, 1, 60, "fixed"),
        Charge("k1", 1, 1, 120, "fixed"),
        Charge("k1", 1, 1, 60, "sliding"),
    ]
    assert [d.allowed for d in await backend.consume(charges, now=now)] == [True] * 4
    for charge in charges:
        assert not (await backend.consume([charge], now=now))[0].allowed


async def test_the_default_clock_is_wall_time(backend: StateBackend) -> None:
    import time

    decision = (await backend.consume([Charge("clock", 1, 10, 60, "sliding")]))[0]
    assert decision.allowed
    assert abs(decision.at - time.time()) < 5


async def test_peek_answers_like_consume_and_takes_nothing(backend: StateBackend) -> None:
    roomy, tight = rate("peek-a", "fixed", limit=5), rate("peek-b", "sliding", limit=1)
    now = at(9, 0)
    for _ in range(3):
        assert [d.allowed for d in await backend.peek([roomy, tight], now=now)] == [True, True]
    await backend.consume([tight], now=now)
    decisions = await backend.peek([roomy, tight], now=now)
    assert [(d.allowed, d.remaining) for d in decisions] == [(True, 5), (False, 0)]
    assert (await backend.consume([roomy], now=now))[0].remaining == 4


async def test_refunds_sent_soon_arrive_merged(backend: StateBackend) -> None:
    """Settlements do not wait: give-backs of many calls and an extra charge, delivered by the next flush
    (at once in memory; in one script call on Redis), as if each had been refunded on its own."""
    charge = Charge("soon", 1, 10, 3600, "sliding")
    decisions = [(await backend.consume([charge]))[0] for _ in range(10)]
    assert not (await backend.consume([charge]))[0].allowed
    for decision in decisions[:6]:
        backend.refund_soon([charge], decision.at)
    backend.refund_soon([charge._replace(amount=-2)], decisions[0].at)  # one call cost 2 more than held
    await backend.flush()
    assert (await backend.peek([charge]))[0].remaining == 4  # 10 - (10 - 6 + 2)
    backend.refund_soon([charge._replace(amount=50)], decisions[0].at)
    await backend.flush()
    assert (await backend.peek([charge]))[0].remaining == 10  # never below zero, merged or not
