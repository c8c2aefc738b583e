"""The in-process counters answer exactly as the Redis script, on random sequences of checks, peeks and
settlements with a clock that mostly creeps, sometimes jumps a window and now and then steps back.

The memory side goes through the hot-path methods (a kept `meter`'s `take`, `hold` and `give_back`, `consume_one`,
`consume_now`, `refund_one`), whose steady-span shortcut must never change an answer, and the clock's jumps let
the sweep forget the counter under the meter; the Redis side is the script every replica shares.
"""

from __future__ import annotations

import random
import uuid

import pytest

from switchpoint.state import Charge, Decision, MemoryState, RedisState
from switchpoint.state.base import Refused
from tests.state.redis_support import delete_prefix

START_MS = 1_800_000_000_000
AMOUNTS = (0.0, 0.25, 1.0, 1.0, 1.0, 2.5, 4.0)


def _step(rng: random.Random) -> int:
    """Milliseconds to the next operation: mostly within a sub-window, sometimes across windows or back."""
    roll = rng.random()
    if roll < 0.6:
        return rng.randrange(0, 400)
    if roll < 0.85:
        return rng.randrange(400, 8_000)
    if roll < 0.95:
        return rng.randrange(8_000, 90_000)
    return -rng.randrange(1, 3_000)


def _same(memory: Decision, redis: Decision) -> bool:
    return (
        memory.allowed == redis.allowed
        and memory.limit == pytest.approx(redis.limit)
        and memory.remaining == pytest.approx(redis.remaining, abs=1e-6)
        and memory.reset_s == pytest.approx(redis.reset_s, abs=1e-6)
    )


@pytest.mark.parametrize("technique", ["sliding", "fixed"])
@pytest.mark.parametrize("seed", range(12))
async def test_memory_answers_as_the_redis_script(redis_url: str, technique: str, seed: int) -> None:
    rng = random.Random(f"{technique}-{seed}")
    clock_ms = [START_MS]
    memory = MemoryState(clock=lambda: clock_ms[0] / 1000)
    prefix = f"sp-test:{uuid.uuid4().hex}:"
    redis = RedisState.from_url(redis_url, prefix=prefix)
    taken: list[tuple[Charge, float]] = []  # what each admitted check took, and when, for settlements
    meter = memory.meter(Charge("bucket", 0.0, 10.0, 60, technique))  # type: ignore[arg-type]
    try:
        for step in range(120):
            clock_ms[0] += _step(rng)
            now = clock_ms[0] / 1000
            charge = Charge("bucket", rng.choice(AMOUNTS), 10.0, 60, technique)  # type: ignore[arg-type]
            op = rng.random()
            if op < 0.25 and taken:
                held, at = rng.choice(taken[-5:])
                back = rng.choice((held.amount, held.amount / 2, held.amount + 2, -1.5))  # refunds, an overspend
                if op < 0.12:
                    meter.give_back(back, at)
                else:
                    memory.refund_one(held, back, at)
                await redis.refund([held._replace(amount=back)], at, now=now)
                continue
            if op < 0.35:
                mine, theirs = (await memory.peek([charge]))[0], (await redis.peek([charge], now=now))[0]
            elif op < 0.45:  # a hold answers only the clock, or the refusal
                theirs = (await redis.consume([charge], now=now))[0]
                try:
                    at = meter.hold(charge.amount)
                except Refused as refused:
                    mine = Decision._make(refused.decision)
                else:
                    assert theirs.allowed and at == now, f"step {step}: held, where Redis answered {theirs}"
                    taken.append((charge, at))
                    continue
            else:
                if op < 0.6:
                    mine = Decision._make(meter.take(charge.amount))
                else:
                    mine = memory.consume_one(charge) if op < 0.75 else memory.consume_now([charge])[0]
                theirs = (await redis.consume([charge], now=now))[0]
                if mine.allowed:
                    taken.append((charge, mine.at))
            assert _same(mine, theirs), f"step {step} at +{clock_ms[0] - START_MS} ms: {mine} != {theirs}"
    finally:
        await redis.aclose()
        await delete_prefix(redis_url, prefix)
