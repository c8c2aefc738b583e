"""What only the Redis backend must show: one limit across OS processes, NOSCRIPT recovery, and an outage
(the server killed and restarted under a live backend) that ends without rebuilding anything."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

import pytest
from redis.asyncio import Redis

from switchpoint.state import Charge, RedisState, StateUnavailable
from tests.state.redis_support import OwnRedis, delete_prefix, unavailable

ATTEMPTS = 300  # per process
LIMIT = 450  # more than one process can take alone, less than both try for


def _hammer(url: str, prefix: str, start: Barrier, results: Queue[int]) -> None:
    """One OS process: ATTEMPTS calls, 30 at a time, on one shared counter; reports how many were admitted."""

    async def run() -> int:
        state = RedisState.from_url(url, prefix=prefix)
        charge = Charge("shared", 1, LIMIT, 3600, "sliding")
        try:
            await state.get("warm-up")  # connect and load the script before the race starts
            start.wait()
            admitted = 0
            for _ in range(ATTEMPTS // 30):
                batch = await asyncio.gather(*(state.consume([charge]) for _ in range(30)))
                admitted += sum(d[0].allowed for d in batch)
            return admitted
        finally:
            await state.aclose()

    results.put(asyncio.run(run()))


def test_two_processes_share_one_limit_exactly(redis_url: str) -> None:
    prefix = f"sp-test:{uuid.uuid4().hex}:"
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_hammer, args=(redis_url, prefix, start, results)) for _ in range(2)]
    try:
        for worker in workers:
            worker.start()
        admitted = [results.get(timeout=20) for _ in workers]
        for worker in workers:
            worker.join(timeout=5)
    finally:
        asyncio.run(delete_prefix(redis_url, prefix))
    assert sum(admitted) == LIMIT  # exact, though neither process could reach it alone
    assert min(admitted) >= LIMIT - ATTEMPTS


async def test_script_is_reloaded_after_the_server_forgets_it(own_redis: OwnRedis) -> None:
    state = RedisState.from_url(own_redis.url)
    charge = Charge("k", 1, 2, 60, "fixed")
    try:
        assert (await state.consume([charge]))[0].allowed
        client = Redis.from_url(own_redis.url)
        await client.script_flush()
        await client.aclose()
        assert (await state.consume([charge]))[0].allowed
        assert not (await state.consume([charge]))[0].allowed
    finally:
        await state.aclose()


async def test_outage_fails_fast_then_recovers_without_a_rebuild(
    own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="switchpoint.state")
    state = RedisState.from_url(own_redis.url, retry_interval_s=0.1, timeout_s=0.5)
    charge = Charge("k", 1, 100, 60, "sliding")
    try:
        assert (await state.consume([charge]))[0].allowed
        await state.set("entry", b"v", 60)
        own_redis.kill()
        with pytest.raises(StateUnavailable):
            await state.consume([charge])
        assert not state.available
        loop = asyncio.get_running_loop()
        started = loop.time()
        for call in (state.consume([charge]), state.get("entry"), state.refund([charge], at=0)):
            with pytest.raises(StateUnavailable):
                await call
        assert loop.time() - started < 0.05  # inside the retry interval nothing touches the network
        own_redis.start()
        await asyncio.sleep(0.15)
        decision = (await state.consume([charge]))[0]
        assert (decision.allowed, decision.remaining) == (True, 99)  # a fresh server: a fresh counter
        assert state.available
        assert state.errors >= 4
        assert await state.get("entry") is None
    finally:
        await state.aclose()
    messages = [record.getMessage() for record in caplog.records]
    assert sum(m.startswith("redis state unavailable") for m in messages) == 1
    assert messages[-1] == "redis state recovered"


@contextmanager
def frozen(server: OwnRedis) -> Iterator[None]:
    """The server hangs (SIGSTOP): the kernel still accepts connections, nothing answers."""
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.process.send_signal(signal.SIGCONT)


async def test_a_hung_server_costs_one_probe_per_retry(own_redis: OwnRedis) -> None:
    state = RedisState.from_url(own_redis.url, retry_interval_s=0.2, timeout_s=0.3)
    charge = Charge("hung", 1, 100, 60, "sliding")
    loop = asyncio.get_running_loop()
    try:
        assert (await state.peek([charge]))[0].allowed
        with frozen(own_redis):
            started = loop.time()
            with pytest.raises(StateUnavailable):  # the reply timeout detects it
                await state.peek([charge])
            assert loop.time() - started >= 0.3
            await asyncio.sleep(0.25)  # past the retry time: the breaker half-opens
            calls = [asyncio.ensure_future(state.peek([charge])) for _ in range(20)]
            await asyncio.sleep(0.05)
            assert sum(call.done() for call in calls) == 19  # all but the probe failed at once
            for call in calls:
                with pytest.raises(StateUnavailable):
                    await call
        await asyncio.sleep(0.45)  # the failed probe doubled the wait
        assert (await state.peek([charge]))[0].allowed
        assert state.available
    finally:
        await state.aclose()


async def test_refunds_held_while_the_breaker_is_open_arrive_once_it_closes(
    own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="switchpoint.state")
    state = RedisState.from_url(own_redis.url, retry_interval_s=0.5, timeout_s=0.3)
    charge = Charge("held", 1, 5, 3600, "fixed")
    try:
        decisions = [(await state.consume([charge]))[0] for _ in range(5)]
        with frozen(own_redis):
            with pytest.raises(StateUnavailable):
                await state.peek([charge])  # opens the breaker; a peek changes nothing if it ever runs
            for decision in decisions[:3]:
                state.refund_soon([charge], decision.at)
            await asyncio.sleep(0.1)  # the flush timer fired and was refused: held, not sent
        assert not state.available
        for _ in range(40):
            await asyncio.sleep(0.05)
            if state.available:
                break
        await asyncio.sleep(0.05)
        assert (await state.peek([charge]))[0].remaining == 3
    finally:
        await state.aclose()
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("redis state: 1 budget refunds held for retry") for m in messages), messages
    assert "redis state: held budget refunds delivered" in messages


async def test_refunds_that_may_have_run_are_logged_not_sent_twice(
    own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="switchpoint.state")
    state = RedisState.from_url(own_redis.url, retry_interval_s=0.1, timeout_s=0.3)
    charge = Charge("twice", 1, 5, 3600, "fixed")
    try:
        decision = (await state.consume([charge]))[0]
        with frozen(own_redis):
            state.refund_soon([charge], decision.at)
            await state.flush()  # sent, then no answer: it may run once the server wakes up
        assert "redis state: 1 budget refunds may not have arrived" in caplog.text
        await state.flush()
        assert len(state._refunds) == 0
    finally:
        await state.aclose()


async def test_close_sends_the_held_refunds(redis_url: str) -> None:
    prefix = f"sp-test:{uuid.uuid4().hex}:"
    charge = Charge("closing", 1, 5, 3600, "fixed")
    state = RedisState.from_url(redis_url, prefix=prefix)
    decisions = [(await state.consume([charge]))[0] for _ in range(5)]
    for decision in decisions:
        state.refund_soon([charge], decision.at)
    await state.aclose()  # before the flush timer
    reopened = RedisState.from_url(redis_url, prefix=prefix)
    try:
        assert (await reopened.peek([charge]))[0].remaining == 5
    finally:
        await reopened.aclose()
        await delete_prefix(redis_url, prefix)


def test_missing_redis_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true: Redis is required"):
        unavailable("no Redis on 127.0.0.1:6379")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        unavailable("no Redis on 127.0.0.1:6379")
