"""The in-memory limiter: exact fixed and sliding windows on an injected clock; peek takes nothing."""

from __future__ import annotations

import pytest

from switchpoint.routing import limits_memory
from switchpoint.routing.limits_memory import MemoryLimiter
from tests.routing.builders import Clock


async def test_fixed_window_resets_at_the_boundary() -> None:
    clock = Clock(1000.0)  # window [960, 1020)
    limiter = MemoryLimiter(clock)
    assert [await limiter.consume("b", 1, 2, 60, "fixed") for _ in range(3)] == [True, True, False]
    clock.now = 1019.9
    assert not await limiter.consume("b", 1, 2, 60, "fixed")
    clock.now = 1020.0
    assert await limiter.consume("b", 1, 2, 60, "fixed")
    assert limiter.used("b", 60, "fixed") == 1


async def test_sliding_window_frees_each_call_a_window_after_it() -> None:
    clock = Clock(1000.0)
    limiter = MemoryLimiter(clock)
    assert await limiter.consume("b", 1, 2, 60, "sliding")
    clock.now = 1030.0
    assert await limiter.consume("b", 1, 2, 60, "sliding")
    clock.now = 1059.0
    assert not await limiter.consume("b", 1, 2, 60, "sliding")  # a fixed window would have reset at 1020
    clock.now = 1060.0
    assert await limiter.consume("b", 1, 2, 60, "sliding")  # the call at 1000 left the window
    clock.now = 1089.0
    assert not await limiter.consume("b", 1, 2, 60, "sliding")
    clock.now = 1090.0
    assert await limiter.consume("b", 1, 2, 60, "sliding")
    assert limiter.used("b", 60, "sliding") == 2


async def test_peek_takes_nothing_and_buckets_are_separate() -> None:
    limiter = MemoryLimiter(Clock())
    assert await limiter.peek("a", 1, 1, 60, "sliding")
    assert await limiter.consume("a", 1, 1, 60, "sliding")
    assert not await limiter.peek("a", 1, 1, 60, "sliding")
    assert await limiter.consume("b", 1, 1, 60, "sliding")
    assert await limiter.consume("a", 1, 1, 30, "sliding")  # another window length is another bucket


@pytest.mark.parametrize("technique", ["fixed", "sliding"])
async def test_budget_admits_until_settled_spend_reaches_the_limit(technique: str) -> None:
    limiter = MemoryLimiter(Clock())
    assert await limiter.consume("cost", 0.0, 5.0, 3600, technique)  # estimate 0 before the call
    limiter.add("cost", 3.0, 3600, technique)  # settled
    assert await limiter.consume("cost", 0.0, 5.0, 3600, technique)
    limiter.add("cost", 2.5, 3600, technique)  # now over
    assert not await limiter.consume("cost", 0.0, 5.0, 3600, technique)
    assert not await limiter.consume("cost", 1.0, 6.0, 3600, technique)  # 5.5 + 1 > 6


async def test_idle_buckets_are_swept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits_memory, "_SWEEP_EVERY", 3)
    clock = Clock(0.0)
    limiter = MemoryLimiter(clock)
    await limiter.consume("old-fixed", 1, 5, 10, "fixed")
    await limiter.consume("old-sliding", 1, 5, 10, "sliding")
    clock.now = 100.0
    await limiter.consume("new", 1, 5, 10, "fixed")  # the third call sweeps
    assert limiter.used("old-fixed", 10, "fixed") == 0 and limiter.used("old-sliding", 10, "sliding") == 0
    assert len(limiter._fixed) == 1 and not limiter._sliding
