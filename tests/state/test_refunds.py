"""How held refunds merge and where the bound drops them (their delivery is in test_counters/test_redis)."""

from __future__ import annotations

from switchpoint.state import Charge
from switchpoint.state.refunds import PendingRefunds

MINUTE = 60_000


def test_give_backs_merge_per_counter_window_and_extra_charges_per_counter() -> None:
    held = PendingRefunds()
    fixed = Charge("f", 1.0, 10, 60, "fixed")
    held.add(fixed, 10 * MINUTE + 1)
    held.add(fixed, 10 * MINUTE + 59_000)  # the same fixed window
    held.add(fixed, 11 * MINUTE)  # the next one: kept apart
    held.add(fixed._replace(amount=-2.0), 10 * MINUTE)
    held.add(fixed._replace(amount=-0.5), 12 * MINUTE)  # extra charges count now, whatever their `at`
    sliding = Charge("s", 0.25, 10, 60, "sliding")  # 1 s sub-windows
    held.add(sliding, 10 * MINUTE + 100)
    held.add(sliding, 10 * MINUTE + 900)
    held.add(sliding, 10 * MINUTE + 1000)
    taken = held.take(100)
    assert [(c.key, c.amount, at_ms) for c, at_ms in taken] == [
        ("f", 2.0, 10 * MINUTE + 1),
        ("f", 1.0, 11 * MINUTE),
        ("f", -2.5, 10 * MINUTE),
        ("s", 0.5, 10 * MINUTE + 100),
        ("s", 0.25, 10 * MINUTE + 1000),
    ]
    assert len(held) == 0


def test_take_returns_at_most_what_is_asked_and_put_back_restores_it() -> None:
    held = PendingRefunds()
    for i in range(5):
        held.add(Charge(f"k{i}", 1.0, 10, 60, "fixed"), 0)
    first = held.take(2)
    assert [c.key for c, _ in first] == ["k0", "k1"] and len(held) == 3
    held.put_back(first)
    held.add(Charge("k0", 1.0, 10, 60, "fixed"), 0)
    assert {c.key: c.amount for c, _ in held.take(10)} == {"k0": 2.0, "k1": 1.0, "k2": 1.0, "k3": 1.0, "k4": 1.0}


def test_past_the_bound_new_counters_are_dropped_and_counted() -> None:
    held = PendingRefunds(limit=2)
    for key in ("a", "b", "c", "d"):
        held.add(Charge(key, 1.0, 10, 60, "fixed"), 0)
    held.add(Charge("a", 1.0, 10, 60, "fixed"), 0)  # merges: no room needed
    assert held.dropped == 2
    assert {c.key: c.amount for c, _ in held.take(10)} == {"a": 2.0, "b": 1.0}
