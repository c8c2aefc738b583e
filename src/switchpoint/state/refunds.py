"""Refunds waiting to go to Redis: merged per counter and window, so the settlements of many calls travel as
one short script call, and bounded, so a long outage cannot grow them without limit.

A give-back (positive amount) is merged with others that return to the same counter's window or sub-window
(the one `at` falls in), which is exactly what the script does with them one by one (never below zero
either way). An extra charge (negative amount) is added at send time, so those merge whatever their `at`.
"""

from __future__ import annotations

from switchpoint.state.base import Charge, slot_ms

MAX_PENDING = 10_000  # distinct counter windows held; beyond this new refunds are dropped (and counted)
_Key = tuple[str, str, int, int | None]


class _Held:
    __slots__ = ("amount", "at_ms", "charge")

    def __init__(self, charge: Charge, at_ms: int) -> None:
        self.charge, self.at_ms, self.amount = charge, at_ms, charge.amount


class PendingRefunds:
    """What `RedisState.refund_soon` holds until the next flush."""

    __slots__ = ("_held", "_limit", "dropped")

    def __init__(self, limit: int = MAX_PENDING) -> None:
        self._held: dict[_Key, _Held] = {}
        self._limit = limit
        self.dropped = 0  # refunds that found no room, since the owner last looked

    def __len__(self) -> int:
        return len(self._held)

    def add(self, charge: Charge, at_ms: int) -> None:
        if charge.amount < 0:
            window: int | None = None
        else:
            window_ms = charge.window_s * 1000
            window = at_ms // (window_ms if charge.technique == "fixed" else slot_ms(window_ms))
        key = (charge.key, charge.technique, charge.window_s, window)
        held = self._held.get(key)
        if held is not None:
            held.amount += charge.amount
        elif len(self._held) < self._limit:
            self._held[key] = _Held(charge, at_ms)
        else:
            self.dropped += 1

    def take(self, most: int) -> list[tuple[Charge, int]]:
        """Up to `most` merged refunds, oldest first, removed from the queue."""
        taken: list[tuple[Charge, int]] = []
        for key in list(self._held)[:most]:
            held = self._held.pop(key)
            taken.append((held.charge._replace(amount=held.amount), held.at_ms))
        return taken

    def put_back(self, refunds: list[tuple[Charge, int]]) -> None:
        """Refunds a flush could not deliver, to go with the next one."""
        for charge, at_ms in refunds:
            self.add(charge, at_ms)
