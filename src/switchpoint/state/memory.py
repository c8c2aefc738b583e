"""In-process state, the default: counters and a byte cache in plain dicts, for one process.

Nothing here awaits between reading and writing, so every method is atomic under concurrent coroutines
on one event loop without a lock. Counter arithmetic follows `base.py` (epoch-aligned fixed windows,
sliding windows of 60 sub-windows) exactly as `counters.lua` does, so both backends answer alike.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence

from switchpoint.state.base import Charge, Decision, fits, slot_ms

_SWEEP_EVERY_MS = 60_000


class _Fixed:
    """The current window's index and what it has used."""

    __slots__ = ("index", "used", "window_ms")

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self.index = -1
        self.used = 0.0

    def used_at(self, now_ms: int) -> float:
        return self.used if self.index == now_ms // self.window_ms else 0.0

    def add(self, amount: float, now_ms: int) -> None:
        index = now_ms // self.window_ms
        if self.index != index:
            self.index, self.used = index, 0.0
        self.used += amount

    def give_back(self, amount: float, at_ms: int, now_ms: int) -> None:
        if self.index == at_ms // self.window_ms:
            self.used = max(0.0, self.used - amount)

    def reset_ms(self, now_ms: int, amount: float, limit: float, ok: bool) -> int:
        return (now_ms // self.window_ms + 1) * self.window_ms - now_ms

    def expired(self, now_ms: int) -> bool:
        return (self.index + 1) * self.window_ms <= now_ms


class _Sliding:
    """Sub-window amounts `[slot, amount]`, oldest first, and their sum."""

    __slots__ = ("length", "slots", "used", "window_ms")

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self.length = slot_ms(window_ms)
        self.slots: deque[list[float]] = deque()
        self.used = 0.0

    def used_at(self, now_ms: int) -> float:
        """Drops the sub-windows that no longer overlap the last `window_ms`, then sums the rest."""
        low = (now_ms - self.window_ms) // self.length
        slots = self.slots
        while slots and slots[0][0] < low:
            self.used -= slots.popleft()[1]
        if not slots:
            self.used = 0.0  # no float drift survives an empty window
        return self.used

    def add(self, amount: float, now_ms: int) -> None:
        slot, slots = now_ms // self.length, self.slots
        if slots and slots[-1][0] >= slot:  # same sub-window (or a clock that stepped back)
            slots[-1][1] += amount
        else:
            slots.append([slot, amount])
        self.used += amount

    def give_back(self, amount: float, at_ms: int, now_ms: int) -> None:
        self.used_at(now_ms)
        slot = at_ms // self.length
        for pair in reversed(self.slots):
            if pair[0] == slot:
                given = min(pair[1], amount)
                pair[1] -= given
                self.used = max(0.0, self.used - given)
            if pair[0] <= slot:
                return

    def reset_ms(self, now_ms: int, amount: float, limit: float, ok: bool) -> int:
        """Allowed: until the oldest counted sub-window drops out. Refused: until enough has dropped out
        for `amount` to fit (a whole window when it never can)."""
        length, window_ms, slots = self.length, self.window_ms, self.slots
        if ok:
            oldest = min(int(slots[0][0]), now_ms // length) if slots else now_ms // length
            return (oldest + 1) * length + window_ms - now_ms
        freed = 0.0
        for slot, held in slots:
            freed += held
            if fits(self.used - freed, amount, limit):
                return (int(slot) + 1) * length + window_ms - now_ms
        return window_ms

    def expired(self, now_ms: int) -> bool:
        return not self.slots or (int(self.slots[-1][0]) + 1) * self.length + self.window_ms <= now_ms


_Entry = _Fixed | _Sliding


class MemoryState:
    """Counters and an LRU-by-bytes cache with TTLs; `clock` (Unix seconds) is injectable for tests."""

    def __init__(self, max_cache_bytes: int = 256 * 1024 * 1024, clock: Callable[[], float] = time.time) -> None:
        self._counters: dict[tuple[str, int, str], _Entry] = {}
        self._cache: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._cache_bytes = 0
        self._max_cache_bytes = max_cache_bytes
        self._clock = clock
        self._sweep_at = 0

    # -- counters ------------------------------------------------------------------------------------

    async def consume(self, charges: Sequence[Charge], now: float | None = None) -> list[Decision]:
        return self._check(charges, now, take=True)

    async def peek(self, charges: Sequence[Charge], now: float | None = None) -> list[Decision]:
        return self._check(charges, now, take=False)

    def _check(self, charges: Sequence[Charge], now: float | None, take: bool) -> list[Decision]:
        at = self._clock() if now is None else now
        now_ms = int(at * 1000)
        if now_ms >= self._sweep_at:
            self._sweep(now_ms)
        if len(charges) == 1:  # the hot path: one rate limit or one spend rule
            charge = charges[0]
            entry = self._entry(charge)
            used = entry.used_at(now_ms)
            fit = fits(used, charge.amount, charge.limit)
            return [_decide(entry, charge, used, fit, take and fit, now_ms, at)]
        entries = [self._entry(charge) for charge in charges]
        used_all = [entry.used_at(now_ms) for entry in entries]
        fit_all = [fits(u, c.amount, c.limit) for u, c in zip(used_all, charges, strict=True)]
        applied = take and all(fit_all)
        return [
            _decide(entry, charge, used, fit, applied, now_ms, at)
            for entry, charge, used, fit in zip(entries, charges, used_all, fit_all, strict=True)
        ]

    async def refund(self, charges: Sequence[Charge], at: float, now: float | None = None) -> None:
        self._refund(charges, at, now)

    def refund_soon(self, charges: Sequence[Charge], at: float) -> None:
        self._refund(charges, at, None)

    async def flush(self) -> None:
        """Nothing is ever held: `refund_soon` applies at once."""

    def _refund(self, charges: Sequence[Charge], at: float, now: float | None) -> None:
        now_ms = int((self._clock() if now is None else now) * 1000)
        at_ms = int(at * 1000)
        for charge in charges:
            entry = self._entry(charge)
            if charge.amount < 0:
                entry.used_at(now_ms)
                entry.add(-charge.amount, now_ms)
            else:
                entry.give_back(charge.amount, at_ms, now_ms)

    def _entry(self, charge: Charge) -> _Entry:
        key = (charge.technique, charge.window_s, charge.key)
        entry = self._counters.get(key)
        if entry is None:
            window_ms = charge.window_s * 1000
            entry = self._counters[key] = _Fixed(window_ms) if charge.technique == "fixed" else _Sliding(window_ms)
        return entry

    def _sweep(self, now_ms: int) -> None:
        """Forget counters whose every window is over, so per-token and per-user keys do not pile up."""
        self._sweep_at = now_ms + _SWEEP_EVERY_MS
        self._counters = {key: entry for key, entry in self._counters.items() if not entry.expired(now_ms)}

    # -- cache ---------------------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        found = self._cache.get(key)
        if found is None:
            return None
        expires, value = found
        if expires <= self._clock():
            self._drop(key)
            return None
        self._cache.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        size = len(key) + len(value)
        if key in self._cache:
            self._drop(key)
        if size > self._max_cache_bytes or ttl_s <= 0:
            return
        self._cache[key] = (self._clock() + ttl_s, value)
        self._cache_bytes += size
        while self._cache_bytes > self._max_cache_bytes:
            self._drop(next(iter(self._cache)))

    def _drop(self, key: str) -> None:
        _, value = self._cache.pop(key)
        self._cache_bytes -= len(key) + len(value)

    @property
    def cache_bytes(self) -> int:
        return self._cache_bytes

    async def aclose(self) -> None:
        self._counters.clear()
        self._cache.clear()
        self._cache_bytes = 0


def _decide(entry: _Entry, charge: Charge, used: float, fit: bool, applied: bool, now_ms: int, at: float) -> Decision:
    """Add the charge when the whole call is `applied`, and describe the counter for this charge."""
    if applied:
        entry.add(charge.amount, now_ms)
        used += charge.amount
    reset_ms = entry.reset_ms(now_ms, charge.amount, charge.limit, fit)
    return Decision(fit, charge.limit, max(0.0, charge.limit - used), reset_ms / 1000, at)
