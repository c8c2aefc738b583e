"""The narrow protocols every state backend implements: atomic counters and a byte cache.

Counters keep windows in one of two techniques, with the same arithmetic in every backend:

- `fixed`: windows aligned to the Unix epoch (a 600 s window runs 12:00-12:10, 12:10-12:20, ...),
  as Cloudflare's fixed rate limits are; the count resets at each boundary.
- `sliding`: the window is cut into `SLIDING_SLOTS` sub-windows of `ceil(window / SLIDING_SLOTS)` ms and
  a charge counts for every sub-window that overlaps the last `window` seconds, the oldest one in full.
  That is never more permissive than an exact sliding log (it cannot overshoot the limit); it may refuse
  up to one sub-window (1/60 of the window) early. It keeps at most 61 numbers per key whatever the
  rate, where a log would keep one entry per request.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple, Protocol, runtime_checkable

from switchpoint.config import Technique

TECHNIQUES: tuple[Technique, ...] = ("fixed", "sliding")
SLIDING_SLOTS = 60
# Costs are floats: sums of decimal prices must not be refused for a rounding error.
EPSILON = 1e-9
# NamedTuple's own __new__ is a Python function: `new_tuple(Charge, (...))` builds the same tuple without
# that call, for the NamedTuples built on every call (Charge, Decision, the limits' Reservation).
new_tuple = tuple.__new__


class StateUnavailable(Exception):
    """The shared state could not be reached or answered with an error; callers apply their fail policy."""


class Charge(NamedTuple):
    """One amount against one counter. `key` is the caller's bucket name; backends add their namespace.
    (NamedTuples here and in `Decision`: they are built on every call, and cost a third of a dataclass.)"""

    key: str
    amount: float
    limit: float
    window_s: int
    technique: Technique


class Decision(NamedTuple):
    """The answer for one charge. `reset_s` is, when allowed, the time until the counter next frees
    capacity, and when refused, the time until this amount would fit (the Retry-After)."""

    allowed: bool
    limit: float
    remaining: float
    reset_s: float
    at: float  # the clock the backend used (Unix seconds); pass it back to `refund`


def with_amount(charge: Charge, amount: float) -> Charge:
    """`charge._replace(amount=amount)` without `_replace`'s Python calls (on every budgeted call)."""
    key, _, limit, window_s, technique = charge
    return new_tuple(Charge, (key, amount, limit, window_s, technique))


def fits(used: float, amount: float, limit: float) -> bool:
    """A positive amount must fit in what is left; a zero amount (an unpriced call) needs something left."""
    if amount > 0:
        return used + amount <= limit + EPSILON
    return used + EPSILON < limit


def slot_ms(window_ms: int) -> int:
    """Length of one sliding sub-window."""
    return max(1, math.ceil(window_ms / SLIDING_SLOTS))


class CounterBackend(Protocol):
    async def consume(self, charges: Sequence[Charge], now: float | None = None) -> list[Decision]:
        """Apply every charge or none: all are checked, then all are added, in one atomic step.

        The decisions come in the order of `charges`; when any is refused nothing is added and each
        decision says whether its own charge would have fit. `now` (Unix seconds) is for tests; backends
        use their own clock (Redis: the server's, so every machine agrees).
        """
        ...

    async def peek(self, charges: Sequence[Charge], now: float | None = None) -> list[Decision]:
        """What `consume` would answer now, taking nothing (for explain views)."""
        ...

    async def refund(self, charges: Sequence[Charge], at: float, now: float | None = None) -> None:
        """Give back each charge's amount in the window it was consumed in (`at`, from its Decision), when
        that window still counts; never below zero. A negative amount is an extra charge added now without
        a limit check (a call that cost more than was reserved has already been spent)."""
        ...

    def refund_soon(self, charges: Sequence[Charge], at: float) -> None:
        """`refund` without waiting for it, for settlements after a call: memory applies it at once; Redis
        sends the refunds of many calls in one script call a moment later (extra charges without delay),
        keeps them while the server is unreachable, and sends what is left at `flush`/`aclose`."""
        ...

    def refund_one(self, charge: Charge, amount: float, at: float) -> None:
        """`refund_soon` of `amount` (not `charge.amount`) in the counter `charge` names: a settlement of one
        spend rule, the usual case, without building a charge and a sequence for it."""
        ...

    async def flush(self) -> None:
        """Send what `refund_soon` still holds (once; what the server refuses stays held)."""
        ...


# A Decision's fields as a plain tuple, as meters answer: building the NamedTuple costs four times as much.
DecisionTuple = tuple[bool, float, float, float, float]


class Refused(Exception):
    """A meter's `hold` that did not fit; `decision` is the counter's answer (nothing was taken)."""

    def __init__(self, decision: DecisionTuple) -> None:
        super().__init__("refused")
        self.decision = decision


class Meter(Protocol):
    """One in-process counter bound to its limit, as `ImmediateCounters.meter` hands it out: the limits keep
    one per rate-limit bucket and spend rule and call it on every call."""

    def take(self, amount: float) -> DecisionTuple:
        """`consume` of `amount` in this counter alone."""
        ...

    def hold(self, amount: float) -> float:
        """`take` for a caller that only needs the clock it was taken at (for `give_back`); raises `Refused`
        when it does not fit."""
        ...

    def give_back(self, amount: float, at: float) -> None:
        """`refund_one` of `amount`, taken at `at`, in this counter."""
        ...


@runtime_checkable
class ImmediateCounters(Protocol):
    """Counters that answer without waiting (in-process memory): the limits' hot path calls these instead
    of awaiting `consume`, which costs a coroutine per check. Same answers."""

    def consume_now(self, charges: Sequence[Charge], now: float | None = None) -> list[Decision]:
        """`consume`, answered at once."""
        ...

    def meter(self, charge: Charge) -> Meter:
        """The counter `charge` names, bound to `charge.limit` (its amount is unused), to keep and call."""
        ...


class CacheBackend(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...


class StateBackend(CounterBackend, CacheBackend, Protocol):
    """What the composition root opens once and closes at shutdown."""

    async def aclose(self) -> None: ...
