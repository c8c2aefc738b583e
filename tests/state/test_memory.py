"""What only the in-process counters do: forget keys whose windows are over, and keep meters on the live counter."""

from __future__ import annotations

from switchpoint.state import Charge, MemoryState


async def test_counters_of_finished_windows_are_swept() -> None:
    state = MemoryState()
    start = 1_800_000_000.0
    for user in range(100):
        await state.consume([Charge(f"user-{user}", 1, 5, 60, "sliding")], now=start)
        await state.consume([Charge(f"user-{user}", 1, 5, 60, "fixed")], now=start)
    await state.consume([Charge("live", 1, 5, 3600, "fixed")], now=start + 100)
    await state.consume([Charge("fresh", 1, 5, 60, "sliding")], now=start + 200)
    assert sorted(key[2] for key in state._counters) == ["fresh", "live"]


async def test_a_meter_follows_its_counter_after_a_sweep_forgot_it() -> None:
    clock = [1_800_000_000.0]
    state = MemoryState(clock=lambda: clock[0])
    charge = Charge("user", 1, 3, 60, "fixed")
    meter = state.meter(charge)
    assert meter.take(1).remaining == 2
    clock[0] += 300  # the window is over: the next check sweeps the counter away
    assert (await state.consume([charge]))[0].remaining == 2  # a new counter for the same key
    assert meter.take(1).remaining == 1  # the meter counts in that one, not in the forgotten one
    meter.give_back(1, clock[0])
    assert (await state.peek([charge]))[0].remaining == 2
    assert len(state._counters) == 1
