"""What only the in-process counters do: forget keys whose windows are over."""

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
