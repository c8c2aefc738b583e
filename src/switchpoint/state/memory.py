"""In-process state, the default: counters and a byte cache in plain dicts, for one process.

Nothing here awaits between reading and writing, so every method is atomic under concurrent coroutines
on one event loop without a lock. Counter arithmetic follows `base.py` (epoch-aligned fixed windows,
sliding windows of 60 sub-windows) exactly as `counters.lua` does, so both backends answer alike.

Since nothing waits, checks are also offered synchronously (the `ImmediateCounters` protocol: `consume_now`,
and `meter`, a counter bound to its limit that the limits' hot path keeps), which spares it a coroutine, a
charge and a lookup per check.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence

from switchpoint.state.base import EPSILON, Charge, Decision, DecisionTuple, Refused, fits, new_tuple, slot_ms

_SWEEP_EVERY_MS = 60_000


_Key = tuple[str, int, str]  # (technique, window_s, bucket): a counter's place in `MemoryState._counters`


class _Counter:
    """What both kinds of counter keep besides their windows: their place, and their steady span.

    After every take a counter notes the span (`steady_from` <= now < `steady_until`) in which nothing drops
    out of what it counts and new amounts land in one place, `last` (`[slot, amount]`: a sliding counter's
    last sub-window; `[index, inf]` for a fixed window, which gives back down to zero); `reset_at` is when it
    next frees capacity. Inside that span a meter's take or give-back is a few additions (`_Meter`); anything
    that drops what it counts, or a sweep that forgets it, ends the span."""

    __slots__ = ("dropped", "key", "last", "reset_at", "steady_from", "steady_until", "used", "window_ms")

    def __init__(self, key: _Key, window_ms: int) -> None:
        self.key, self.window_ms = key, window_ms
        self.used = 0.0
        self.last: list[float] = []
        # Floats, though whole milliseconds: meters compare them with `clock() * 1000` (float with float is
        # the cheapest comparison in the interpreter; with an int it is not).
        self.steady_from = self.steady_until = self.reset_at = 0.0
        self.dropped = False  # forgotten by a sweep; a meter that still holds it looks the key up again


class _Fixed(_Counter):
    """The current window's index and what it has used."""

    __slots__ = ("index",)

    def __init__(self, key: _Key, window_ms: int) -> None:
        super().__init__(key, window_ms)
        self.index = -1

    def check(self, amount: float, limit: float, now_ms: int, take: bool, at: float) -> Decision:
        """Does `amount` fit (`fits`), and take it when it does and `take`."""
        window_ms = self.window_ms
        index = now_ms // window_ms
        used = self.used if self.index == index else 0.0
        fit = used + amount <= limit + EPSILON if amount > 0 else used + EPSILON < limit
        if fit and take:
            if self.index != index:
                self.index = index
                self.steady_from, self.steady_until = float(index * window_ms), float((index + 1) * window_ms)
                self.reset_at, self.last = self.steady_until, [index, math.inf]
            used = self.used = used + amount
        left = limit - used
        reset_s = ((index + 1) * window_ms - now_ms) / 1000
        return new_tuple(Decision, (fit, limit, left if left > 0 else 0.0, reset_s, at))

    def settle(self, amount: float, at_ms: int, now_ms: int) -> None:
        """Give back `amount` if the window it was taken in (`at_ms`) is still current; a negative amount
        is added now, unchecked."""
        if amount < 0:
            self.check(-amount, math.inf, now_ms, True, 0.0)  # an unchecked add: a check against no limit
        elif self.index == at_ms // self.window_ms:
            used = self.used - amount
            self.used = used if used > 0 else 0.0

    def expired(self, now_ms: int) -> bool:
        return (self.index + 1) * self.window_ms <= now_ms


class _Sliding(_Counter):
    """Sub-window amounts `[slot, amount]`, oldest first, and their sum. Between two sub-window boundaries
    nothing drops out and new charges land in the last sub-window: the steady span."""

    __slots__ = ("length", "slots")

    def __init__(self, key: _Key, window_ms: int) -> None:
        super().__init__(key, window_ms)
        self.length = slot_ms(window_ms)
        self.slots: deque[list[float]] = deque()

    def _used_at(self, now_ms: int) -> float:
        """Drops the sub-windows that no longer overlap the last `window_ms`, then sums the rest."""
        low = (now_ms - self.window_ms) // self.length
        slots = self.slots
        if slots and slots[0][0] < low:
            self.steady_until = 0.0  # the steady span is over (it is re-noted at the next take)
            while slots and slots[0][0] < low:
                self.used -= slots.popleft()[1]
        if not slots:
            self.used = 0.0  # no float drift survives an empty window
        return self.used

    def _steady(self) -> None:
        """Note the span in which the last sub-window stays current and none drops out, after a take."""
        length, last = self.length, self.slots[-1]
        self.last = last
        self.steady_from = float(int(last[0]) * length)
        self.reset_at = float((int(self.slots[0][0]) + 1) * length + self.window_ms)  # when the oldest drops out
        self.steady_until = min(self.steady_from + length, self.reset_at)

    def check(self, amount: float, limit: float, now_ms: int, take: bool, at: float) -> Decision:
        """As `_Fixed.check`. Allowed: the reset is when the oldest counted sub-window drops out."""
        length, slots = self.length, self.slots
        used = self._used_at(now_ms)
        fit = used + amount <= limit + EPSILON if amount > 0 else used + EPSILON < limit
        if not fit:
            reset_s = self._refused_reset_s(now_ms, amount, limit)
            return new_tuple(Decision, (False, limit, max(0.0, limit - used), reset_s, at))
        slot = now_ms // length
        if take:
            if not slots or slots[-1][0] < slot:
                slots.append([slot, amount])
            elif slots[-1][0] == slot:
                slots[-1][1] += amount
            else:
                self._add_back(slot, amount)
            used = self.used = used + amount
            self._steady()
        oldest = slots[0][0] if slots and slots[0][0] < slot else slot
        left = limit - used
        reset_s = (int(oldest + 1) * length + self.window_ms - now_ms) / 1000
        return new_tuple(Decision, (True, limit, left if left > 0 else 0.0, reset_s, at))

    def _add_back(self, slot: int, amount: float) -> None:
        """A clock that stepped back: the amount goes to the sub-window it names, kept in order (as the Redis
        script's hash field does), not to the newest one."""
        slots = self.slots
        for i, pair in enumerate(slots):
            if pair[0] == slot:
                pair[1] += amount
                return
            if pair[0] > slot:
                slots.insert(i, [slot, amount])
                return

    def _refused_reset_s(self, now_ms: int, amount: float, limit: float) -> float:
        """Until enough has dropped out for `amount` to fit (a whole window when it never can)."""
        length, window_ms = self.length, self.window_ms
        freed = 0.0
        for slot, held in self.slots:
            freed += held
            if fits(self.used - freed, amount, limit):
                return ((int(slot) + 1) * length + window_ms - now_ms) / 1000
        return window_ms / 1000

    def settle(self, amount: float, at_ms: int, now_ms: int) -> None:
        """Give back `amount` from the sub-window it was taken in, if that still counts (never below zero);
        a negative amount is added now, unchecked."""
        if amount < 0:
            self.check(-amount, math.inf, now_ms, True, 0.0)  # an unchecked add: a check against no limit
            return
        self._used_at(now_ms)
        slot = at_ms // self.length
        for pair in reversed(self.slots):
            if pair[0] == slot:
                given = min(pair[1], amount)
                pair[1] -= given
                self.used = max(0.0, self.used - given)
            if pair[0] <= slot:
                return

    def expired(self, now_ms: int) -> bool:
        return not self.slots or (int(self.slots[-1][0]) + 1) * self.length + self.window_ms <= now_ms


_Entry = _Fixed | _Sliding


class _Meter:
    """One counter bound to its limit, held by the limits' hot path (`ImmediateCounters.meter`). Inside the
    counter's steady span a take that fits, or a give-back of what was taken there, is a few additions done
    here, with no charge to build, no lookup and no call; anything else goes to the counter's own `check` or
    `settle`. A counter that a sweep forgot is looked up again, so every meter of a bucket counts in the one
    counter that `MemoryState._counters` holds."""

    __slots__ = ("clock", "entry", "limit", "state")

    def __init__(self, state: MemoryState, entry: _Entry, limit: float) -> None:
        self.state, self.entry, self.limit, self.clock = state, entry, limit, state._clock

    def take(self, amount: float) -> DecisionTuple:
        at = self.clock()
        now = at * 1000  # compared with whole milliseconds, the float answers as its int would
        entry = self.entry
        if entry.steady_from <= now < entry.steady_until and amount > 0:
            used = entry.used + amount
            limit = self.limit
            if used <= limit + EPSILON:  # `fits`; nothing drops out inside the span
                entry.used = used
                entry.last[1] += amount
                left = limit - used
                return (True, limit, left if left > 0 else 0.0, (entry.reset_at - now // 1.0) / 1000, at)
        return self._check(amount, at, int(now))

    def hold(self, amount: float) -> float:
        at = self.clock()
        now = at * 1000  # as in `take`
        entry = self.entry
        if entry.steady_from <= now < entry.steady_until and amount > 0:
            used = entry.used + amount
            if used <= self.limit + EPSILON:
                entry.used = used
                entry.last[1] += amount
                return at
        decision = self._check(amount, at, int(now))
        if not decision[0]:
            raise Refused(decision)
        return at

    def _check(self, amount: float, at: float, now_ms: int) -> Decision:
        """A take outside the steady span: the counter's own check (sweeping first when it is time)."""
        state, entry = self.state, self.entry
        if now_ms >= state._sweep_at:
            state._sweep(now_ms)
        if entry.dropped:
            entry = self.entry = state._entry(entry.key[2], entry.key[1], entry.key[0])
        return entry.check(amount, self.limit, now_ms, True, at)

    def give_back(self, amount: float, at: float) -> None:
        now, at_ms = self.clock() * 1000, at * 1000  # as in `take`
        entry = self.entry
        if entry.steady_from <= at_ms <= now < entry.steady_until and amount > 0:  # taken where it still counts
            last = entry.last
            given = amount if amount < last[1] else last[1]
            last[1] -= given
            used = entry.used - given
            entry.used = used if used > 0 else 0.0
            return
        if entry.dropped:
            entry = self.entry = self.state._entry(entry.key[2], entry.key[1], entry.key[0])
        entry.settle(amount, int(at_ms), int(now))


class MemoryState:
    """Counters and an LRU-by-bytes cache with TTLs; `clock` (Unix seconds) is injectable for tests."""

    def __init__(self, max_cache_bytes: int = 256 * 1024 * 1024, clock: Callable[[], float] = time.time) -> None:
        self._counters: dict[_Key, _Entry] = {}
        self._cache: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._cache_bytes = 0
        self._max_cache_bytes = max_cache_bytes
        self._clock = clock
        self._sweep_at = 0

    # -- counters ------------------------------------------------------------------------------------

    async def consume(self, charges: Sequence[Charge], now: float | None = None) -> list[Decision]:
        return self.consume_now(charges, now)

    def consume_now(self, charges: Sequence[Charge], now: float | None = None) -> list[Decision]:
        """`consume` without waiting (`ImmediateCounters`)."""
        if len(charges) != 1:
            return self._check(charges, now, take=True)
        return [self.consume_one(charges[0], now)]

    def consume_one(self, charge: Charge, now: float | None = None) -> Decision:
        """`consume_now` of one charge, without the all-or-none pass of several."""
        at = self._clock() if now is None else now
        now_ms = int(at * 1000)
        if now_ms >= self._sweep_at:
            self._sweep(now_ms)
        key, amount, limit, window_s, technique = charge
        return self._entry(key, window_s, technique).check(amount, limit, now_ms, True, at)

    def meter(self, charge: Charge) -> _Meter:
        """The counter `charge` names, bound to its limit (`ImmediateCounters`); its amount is unused."""
        return _Meter(self, self._entry(charge.key, charge.window_s, charge.technique), charge.limit)

    async def peek(self, charges: Sequence[Charge], now: float | None = None) -> list[Decision]:
        return self._check(charges, now, take=False)

    def _check(self, charges: Sequence[Charge], now: float | None, take: bool) -> list[Decision]:
        at = self._clock() if now is None else now
        now_ms = int(at * 1000)
        if now_ms >= self._sweep_at:
            self._sweep(now_ms)
        entries = [self._entry(c.key, c.window_s, c.technique) for c in charges]
        decisions = [e.check(c.amount, c.limit, now_ms, False, at) for e, c in zip(entries, charges, strict=True)]
        if take and all(d.allowed for d in decisions):  # all or none: each is added as checked above
            for entry, charge in zip(entries, charges, strict=True):
                entry.check(charge.amount, math.inf, now_ms, True, at)  # added unchecked: it fit above
            decisions = [
                d._replace(remaining=max(0.0, d.remaining - c.amount)) for d, c in zip(decisions, charges, strict=True)
            ]
        return decisions

    async def refund(self, charges: Sequence[Charge], at: float, now: float | None = None) -> None:
        self.refund_soon(charges, at, now)

    def refund_soon(self, charges: Sequence[Charge], at: float, now: float | None = None) -> None:
        """Applied at once (`now` is for tests, as in `refund`)."""
        now_ms = int((self._clock() if now is None else now) * 1000)
        at_ms = int(at * 1000)
        counters = self._counters
        for key, amount, _, window_s, technique in charges:
            entry = counters.get((technique, window_s, key)) or self._entry(key, window_s, technique)
            entry.settle(amount, at_ms, now_ms)

    def refund_one(self, charge: Charge, amount: float, at: float) -> None:
        key, _, _, window_s, technique = charge
        entry = self._counters.get((technique, window_s, key)) or self._entry(key, window_s, technique)
        entry.settle(amount, int(at * 1000), int(self._clock() * 1000))

    async def flush(self) -> None:
        """Nothing is ever held: `refund_soon` applies at once."""

    def _entry(self, key: str, window_s: int, technique: str) -> _Entry:
        found = self._counters.get((technique, window_s, key))
        if found is None:
            window_ms = window_s * 1000
            place = (technique, window_s, key)
            found = self._counters[place] = (
                _Fixed(place, window_ms) if technique == "fixed" else _Sliding(place, window_ms)
            )
        return found

    def _sweep(self, now_ms: int) -> None:
        """Forget counters whose every window is over, so per-token and per-user keys do not pile up."""
        self._sweep_at = now_ms + _SWEEP_EVERY_MS
        kept: dict[_Key, _Entry] = {}
        for key, entry in self._counters.items():
            if entry.expired(now_ms):
                entry.dropped, entry.steady_until = True, 0.0
            else:
                kept[key] = entry
        self._counters = kept

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
