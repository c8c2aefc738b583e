"""The pipelined RESP client under RedisState: URLs, authentication and database selection, replies of any
size, callers that give up, and a server that stops answering."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from switchpoint.state import Charge, RedisState, StateUnavailable
from switchpoint.state.resp import ConnectionLost, RedisAddress, ReplyError, RespClient
from tests.state.redis_support import OwnRedis


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", RedisAddress()),
        ("redis://cache.internal", RedisAddress(host="cache.internal")),
        ("redis://:p%40ss@h:7000/3", RedisAddress("h", 7000, None, 3, None, "p@ss")),
        ("redis://app:pw@h/2?db=5", RedisAddress("h", 6379, None, 5, "app", "pw")),
        ("rediss://h:6380", RedisAddress("h", 6380, tls=True)),
        ("unix:///run/redis.sock?db=1", RedisAddress(path="/run/redis.sock", db=1)),
        ("unix://:pw@/run/redis.sock", RedisAddress(path="/run/redis.sock", password="pw")),
    ],
)
def test_urls(url: str, expected: RedisAddress) -> None:
    assert RedisAddress.from_url(url) == expected


def test_other_schemes_are_refused() -> None:
    with pytest.raises(ValueError, match="redis://, rediss:// or unix://"):
        RedisAddress.from_url("http://127.0.0.1:6379")


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[RespClient]:
    resp = RespClient(RedisAddress.from_url(redis_url))
    yield resp
    await resp.aclose()


async def test_replies_of_every_shape(client: RespClient) -> None:
    key = f"sp-test:{uuid.uuid4().hex}"
    try:
        assert await client.call("PING") == "PONG"
        assert await client.call("GET", key) is None
        assert await client.call("SET", key, b"\x00\r\n$3\r\nbinary", "PX", 10_000) == "OK"
        assert await client.call("GET", key) == b"\x00\r\n$3\r\nbinary"
        assert await client.call("EVAL", "return {1, 'two', {3}, false}", 0) == [1, b"two", [3], None]
        with pytest.raises(ReplyError, match="ERR"):
            await client.call("NOSUCHCOMMAND")
        assert await client.call("INCR", key + ":n") == 1  # the stream is still in step after an error
    finally:
        await client.call("DEL", key, key + ":n")


async def test_large_values_and_many_concurrent_calls(client: RespClient) -> None:
    key = f"sp-test:{uuid.uuid4().hex}"
    blob = bytes(range(256)) * 40_000  # 10 MB arrives in many reads
    try:
        await client.call("SET", key, blob, "PX", 10_000)
        results = await asyncio.gather(client.call("GET", key), *(client.call("ECHO", str(i)) for i in range(500)))
        assert results[0] == blob
        assert results[1:] == [str(i).encode() for i in range(500)]
    finally:
        await client.call("DEL", key)


async def test_a_caller_that_gives_up_does_not_shift_the_replies(client: RespClient) -> None:
    slow = asyncio.ensure_future(client.call("EVAL", "local t = redis.call('TIME') return 'slow'", 0))
    await asyncio.sleep(0)
    slow.cancel()
    assert await client.call("ECHO", "mine") == b"mine"
    with pytest.raises(asyncio.CancelledError):
        await slow


async def test_authentication_and_database(own_redis_with_password: OwnRedis) -> None:
    port = own_redis_with_password.port
    for user, url in enumerate((f"redis://:s3cret@127.0.0.1:{port}/4", f"redis://app:s3cret-app@127.0.0.1:{port}/4")):
        state = RedisState.from_url(url, prefix="sp:")
        try:
            await state.set("k", b"v", 60)
            assert (await state.consume([Charge(f"c{user}", 1, 1, 60, "fixed")]))[0].allowed
        finally:
            await state.aclose()
    admin = Redis.from_url(f"redis://:s3cret@127.0.0.1:{port}/4")
    assert await admin.get("sp:k:k") == b"v"
    await admin.aclose()
    refused = RedisState.from_url(f"redis://:wrong@127.0.0.1:{port}/0")
    with pytest.raises(StateUnavailable, match="refused the connection setup"):
        await refused.get("k")
    await refused.aclose()


async def test_a_silent_server_times_out() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # reads nothing, answers nothing

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = RespClient(RedisAddress(port=port), timeout_s=0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        results = await asyncio.gather(client.call("PING"), client.call("PING"), return_exceptions=True)
        assert all(isinstance(r, ConnectionLost) for r in results)
        assert 0.15 < loop.time() - started < 1.0
    finally:
        await client.aclose()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_nothing_listening_is_a_lost_connection() -> None:
    from tests.state.redis_support import free_port

    client = RespClient(RedisAddress(port=free_port()), timeout_s=0.5)
    with pytest.raises(ConnectionLost, match="cannot connect"):
        await client.call("PING")
    await client.aclose()
