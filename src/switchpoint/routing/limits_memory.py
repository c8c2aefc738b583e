"""An in-process `Limiter` for route rate and budget elements: exact fixed and sliding windows, for tests and
the single-process default. Shared limits across workers come from the state backend instead.

A request is admitted when the bucket is below its limit and the amount fits: `used < limit` and
`used + amount <= limit`. So a count limit of 3 admits 3 calls, and a cost budget (which consumes an
estimate of 0 before the call) admits calls until the settled cost reaches the limit.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

_SWEEP_EVERY = 4096  # consumes between sweeps of idle buckets


@dataclass(slots=True)
class _Fixed:
    window_index: int
    used: float = 0.0


@dataclass(slots=True)
class _Sliding:
    events: deque[tuple[float, float]] = field(default_factory=deque)  # (time, amount), oldest first
    used: float = 0.0


class MemoryLimiter:
    """Satisfies `routing.evaluate.Limiter` (and `LimitPeek`); not shared between processes."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._fixed: dict[tuple[str, int], _Fixed] = {}
        self._sliding: dict[tuple[str, int], _Sliding] = {}
        self._calls = 0

    async def consume(self, bucket: str, amount: float, limit: float, window_s: int, technique: str) -> bool:
        """Take `amount` from the bucket if it fits; False (and nothing taken) otherwise."""
        self._calls += 1
        if self._calls % _SWEEP_EVERY == 0:
            self._sweep()
        if not self._fits(bucket, amount, limit, window_s, technique):
            return False
        self.add(bucket, amount, window_s, technique)
        return True

    async def peek(self, bucket: str, amount: float, limit: float, window_s: int, technique: str) -> bool:
        """Whether `consume` would admit this now, without taking anything."""
        return self._fits(bucket, amount, limit, window_s, technique)

    def used(self, bucket: str, window_s: int, technique: str) -> float:
        """What the bucket holds in the current window."""
        now = self._clock()
        if technique == "fixed":
            state = self._fixed.get((bucket, window_s))
            return state.used if state is not None and state.window_index == int(now // window_s) else 0.0
        sliding = self._sliding.get((bucket, window_s))
        if sliding is None:
            return 0.0
        self._expire(sliding, now - window_s)
        return sliding.used

    def add(self, bucket: str, amount: float, window_s: int, technique: str) -> None:
        """Record usage unconditionally: the settle hook for a budget once the real cost is known."""
        now = self._clock()
        if technique == "fixed":
            index = int(now // window_s)
            state = self._fixed.get((bucket, window_s))
            if state is None or state.window_index != index:
                state = self._fixed[(bucket, window_s)] = _Fixed(index)
            state.used += amount
            return
        sliding = self._sliding.setdefault((bucket, window_s), _Sliding())
        self._expire(sliding, now - window_s)
        if amount:
            sliding.events.append((now, amount))
            sliding.used += amount

    def _fits(self, bucket: str, amount: float, limit: float, window_s: int, technique: str) -> bool:
        used = self.used(bucket, window_s, technique)
        return used < limit and used + amount <= limit

    @staticmethod
    def _expire(state: _Sliding, horizon: float) -> None:
        events = state.events
        while events and events[0][0] <= horizon:
            state.used -= events.popleft()[1]
        if not events:
            state.used = 0.0  # drop float drift once the window is empty

    def _sweep(self) -> None:
        now = self._clock()
        for key, fixed in list(self._fixed.items()):
            if fixed.window_index != int(now // key[1]):
                del self._fixed[key]
        for key, sliding in list(self._sliding.items()):
            self._expire(sliding, now - key[1])
            if not sliding.events:
                del self._sliding[key]
