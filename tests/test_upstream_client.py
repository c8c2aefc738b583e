"""`upstream.Upstream`, the HTTP/1.1 client, against raw asyncio servers that write exact bytes.

Each server counts its TCP connections and records the request bytes it read, so pooling, framing,
streaming, timeouts and failure mapping are all observed on the wire.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from multidict import CIMultiDict

from switchpoint.errors import (
    UpstreamError,
    UpstreamReset,
    UpstreamTimeout,
    UpstreamTruncated,
    UpstreamUnavailable,
)
from switchpoint.upstream import Upstream, UpstreamAnswer

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"


class RawServer:
    """A TCP server on 127.0.0.1:0 whose handler writes raw bytes."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.errors: list[BaseException] = []
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> RawServer:
        self._server = await asyncio.start_server(self._on_connect, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        # the handler runs in a task of its own, so `close` can cancel it without upsetting start_server
        task = asyncio.ensure_future(self.handler(self, reader, writer))
        self._tasks.add(task)
        try:
            await asyncio.wait([task])
            if not task.cancelled() and task.exception() is not None:
                exc = task.exception()
                if not isinstance(exc, ConnectionError | asyncio.IncompleteReadError):
                    self.errors.append(exc)  # type: ignore[arg-type]
        finally:
            writer.close()
            self._tasks.discard(task)

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        """One whole request (head + Content-Length body), or None at EOF."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        request = head + (await reader.readexactly(length) if length else b"")
        self.requests.append(request)
        return request

    async def close(self) -> None:
        self._server.close()
        for writer in self._writers:
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


Handler = Callable[[RawServer, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[RawServer]:
    server = await RawServer(handler).start()
    try:
        yield server
    finally:
        await server.close()


@asynccontextmanager
async def client(pool_size: int = 4, connect_ms: int = 2000, idle_ms: int = 2000) -> AsyncIterator[Upstream]:
    upstream = Upstream(pool_size, connect_ms, idle_ms)
    await upstream.start()
    try:
        yield upstream
    finally:
        await upstream.close()


def keep_alive(response: bytes = OK) -> Handler:
    """Answer every request on the connection with `response`."""

    async def handler(srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await srv.read_request(reader) is not None:
            writer.write(response)
            await writer.drain()

    return handler


def once(response: bytes, then: Callable[[], Awaitable[None]] | None = None) -> Handler:
    """Read one request, write `response`, then (optionally) wait on `then` before closing."""

    async def handler(srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.read_request(reader)
        writer.write(response)
        await writer.drain()
        if then is not None:
            await then()

    return handler


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def forever() -> None:
    """Never returns on its own; `RawServer.close` cancels the handler that waits here."""
    await asyncio.Event().wait()


async def get(upstream: Upstream, url: str, timeout_ms: int | None = None, method: str = "GET") -> UpstreamAnswer:
    return await upstream.open(method, url, CIMultiDict(), b"", timeout_ms)


async def fetch(upstream: Upstream, url: str) -> tuple[int, bytes]:
    answer = await get(upstream, url)
    try:
        return answer.status, await answer.read()
    finally:
        answer.release()


# -- framing -----------------------------------------------------------------------------------------


async def test_content_length_body() -> None:
    async with serve(once(OK)) as srv, client() as up, asyncio.timeout(3):
        answer = await get(up, srv.url())
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "text/plain"
        assert answer.headers["content-length"] == "5"
        assert await answer.read() == b"hello"
        answer.release()


async def test_response_headers_keep_order_and_repeats() -> None:
    response = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 0\r\n\r\n"
    async with serve(once(response)) as srv, client() as up, asyncio.timeout(3):
        answer = await get(up, srv.url())
        assert answer.status == 429
        assert answer.headers.getall("x-a") == ["1", "2"]
        assert list(answer.headers.items()) == [
            ("Retry-After", "7"),
            ("X-A", "1"),
            ("x-a", "2"),
            ("Content-Length", "0"),
        ]
        assert answer.retry_after == 7.0
        assert await answer.read() == b""
        answer.release()


@pytest.mark.parametrize(("value", "seconds"), [("0", 0.0), ("1.5", 1.5), ("-3", 0.0), ("Wed, 21 Oct 2015", None)])
async def test_retry_after_parsing(value: str, seconds: float | None) -> None:
    response = f"HTTP/1.1 503 Busy\r\nRetry-After: {value}\r\nContent-Length: 0\r\n\r\n".encode()
    async with serve(once(response)) as srv, client() as up, asyncio.timeout(3):
        answer = await get(up, srv.url())
        assert answer.retry_after == seconds
        answer.release()


async def test_chunked_body_is_streamed_chunk_by_chunk() -> None:
    first_seen, second_seen = asyncio.Event(), asyncio.Event()

    async def handler(srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n")
        writer.write(chunk(b"data: first\n\n"))
        await writer.drain()
        await first_seen.wait()  # nothing more until the client has the first chunk in hand
        writer.write(chunk(b"data: second\n\n"))
        await writer.drain()
        await second_seen.wait()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await forever()

    async with serve(handler) as srv, client() as up, asyncio.timeout(3):
        answer = await get(up, srv.url())
        assert answer.headers["transfer-encoding"] == "chunked"
        chunks = answer.chunks()
        assert await anext(chunks) == b"data: first\n\n"
        first_seen.set()
        assert await anext(chunks) == b"data: second\n\n"
        second_seen.set()
        with pytest.raises(StopAsyncIteration):
            await anext(chunks)
        answer.release()


async def test_body_delimited_by_connection_close() -> None:
    async def handler(srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart1")
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b"part2")
        await writer.drain()

    async with serve(handler) as srv, client() as up, asyncio.timeout(3):
        assert await fetch(up, srv.url()) == (200, b"part1part2")
        assert await fetch(up, srv.url()) == (200, b"part1part2")
        assert srv.connections == 2  # a close-delimited connection is never pooled


async def test_reset_during_a_close_delimited_body_is_truncation() -> None:
    go = asyncio.Event()

    async def handler(srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart1")
        await writer.drain()
        await go.wait()
        reset(writer)

    async with serve(handler) as srv, client() as up, asyncio.timeout(3):
        answer = await get(up, srv.url())
        chunks = answer.chunks()
        assert await anext(chunks) == b"part1"
        go.set()
        with pytest.raises(UpstreamTruncated):
            await anext(chunks)
        answer.release()


async def test_100_continue_before_the_real_response() -> None:
    async def handler(srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await srv.read_request(reader) is not None:
            writer.write(b"HTTP/1.1 100 Continue\r\nX-Interim: yes\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-Real: 1\r\n\r\nok")
            await writer.drain()

    async with serve(handler) as srv, client() as up, asyncio.timeout(3):
        answer = await up.open("POST", srv.url(), CIMultiDict(), b"{}", None)
        assert answer.status == 201
        assert answer.headers.get("x-real") == "1" and "x-interim" not in answer.headers
        assert await answer.read() == b"ok"
        answer.release()
        assert await fetch(up, srv.url()) == (201, b"ok")
        assert srv.connections == 1


async def test_head_response_with_content_length_but_no_body_does_not_hang() -> None:
    head_only = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: application/json\r\n\r\n"
    async with serve(once(head_only, forever)) as srv, client() as up, asyncio.timeout(2):
        answer = await get(up, srv.url("/v1/models"), method="HEAD")
        assert (answer.status, answer.headers["content-length"]) == (200, "1000")
        assert await answer.read() == b""
        answer.release()
        assert srv.requests[0].startswith(b"HEAD /v1/models HTTP/1.1\r\n")


async def test_204_without_length_completes() -> None:
    async with serve(keep_alive(b"HTTP/1.1 204 No Content\r\n\r\n")) as srv, client() as up, asyncio.timeout(3):
        assert await fetch(up, srv.url()) == (204, b"")
        assert await fetch(up, srv.url()) == (204, b"")
        assert srv.connections == 1


# -- keep-alive pool ---------------------------------------------------------------------------------


async def test_keep_alive_reuses_one_connection() -> None:
    async with serve(keep_alive()) as srv, client() as up, asyncio.timeout(3):
        for _ in range(3):
            assert await fetch(up, srv.url("/x")) == (200, b"hello")
        assert srv.connections == 1 and len(srv.requests) == 3


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    ],
    ids=["connection-close", "http-1.0"],
)
async def test_connection_close_prevents_reuse(response: bytes) -> None:
    async with serve(keep_alive(response)) as srv, client() as up, asyncio.timeout(3):
        assert await fetch(up, srv.url()) == (200, b"hello")
        assert await fetch(up, srv.url()) == (200, b"hello")
        assert srv.connections == 2


async def test_an_answer_released_before_its_body_ends_is_not_reused() -> None:
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"  # 5 bytes still owed

    async def handler(srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.read_request(reader)
        writer.write(response)
        await writer.drain()
        await srv.read_request(reader)  # EOF once the client closes

    async with serve(handler) as srv, client() as up, asyncio.timeout(3):
        answer = await get(up, srv.url())
        answer.release()
        second = await get(up, srv.url())
        second.release()
        assert srv.connections == 2


async def test_pooled_connection_closed_by_the_server_while_idle_is_replaced() -> None:
    async with serve(once(OK)) as srv, client() as up, asyncio.timeout(3):  # closes after each response
        assert await fetch(up, srv.url()) == (200, b"hello")
        await asyncio.sleep(0.05)  # the FIN arrives while the connection sits in the pool
        assert await fetch(up, srv.url()) == (200, b"hello")
        assert srv.connections == 2


def _drop_second_request_on_first_connection() -> Handler:
    """Connection 1 answers one request, then reads the next one and closes without a word."""

    async def handler(srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first_connection = srv.connections == 1
        await keep_alive_n(srv, reader, writer, 1 if first_connection else 10)
        if first_connection:
            await srv.read_request(reader)

    return handler


async def keep_alive_n(srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    for _ in range(n):
        if await srv.read_request(reader) is None:
            return
        writer.write(OK)
        await writer.drain()


async def test_idempotent_request_on_a_dropped_pooled_connection_is_retried_on_a_fresh_one() -> None:
    async with serve(_drop_second_request_on_first_connection()) as srv, client() as up, asyncio.timeout(3):
        assert await fetch(up, srv.url()) == (200, b"hello")
        assert await fetch(up, srv.url()) == (200, b"hello")
        assert srv.connections == 2


async def test_post_on_a_pooled_connection_dropped_after_reading_is_not_sent_twice() -> None:
    async with serve(_drop_second_request_on_first_connection()) as srv, client() as up, asyncio.timeout(3):
        assert await fetch(up, srv.url()) == (200, b"hello")
        with pytest.raises(UpstreamReset):
            await up.open("POST", srv.url("/v1/chat/completions"), CIMultiDict(), b'{"model":"m"}', None)
        posts = [r for r in srv.requests if r.startswith(b"POST ")]
        assert len(posts) == 1


async def test_close_closes_idle_connections() -> None:
    eof = asyncio.Event()

    async def handler(srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await keep_alive_n(srv, reader, writer, 1)
        assert await srv.read_request(reader) is None
        eof.set()

    async with serve(handler) as srv, asyncio.timeout(3):
        async with client() as up:
            assert await fetch(up, srv.url()) == (200, b"hello")
        await eof.wait()


# -- the request on the wire -------------------------------------------------------------------------


async def test_request_bytes() -> None:
    headers = CIMultiDict([("x-first", "1"), ("Authorization", "Bearer sk-x"), ("X-Dup", "a"), ("x-dup", "b")])
    headers.add("content-type", "application/json")
    body = b'{"model":"gpt-4o-mini","messages":[]}'
    async with serve(once(OK)) as srv, client() as up, asyncio.timeout(3):
        answer = await up.open("POST", srv.url("/v1/chat/completions?a=1&b=%2F"), headers, body, None)
        answer.release()
    host = f"127.0.0.1:{srv.port}"
    assert srv.requests == [
        (
            "POST /v1/chat/completions?a=1&b=%2F HTTP/1.1\r\n"
            f"host: {host}\r\n"
            "x-first: 1\r\n"
            "Authorization: Bearer sk-x\r\n"
            "X-Dup: a\r\n"
            "x-dup: b\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            "\r\n"
        ).encode()
        + body
    ]


async def test_request_bytes_without_a_body() -> None:
    async with serve(keep_alive()) as srv, client() as up, asyncio.timeout(3):
        (await get(up, f"http://127.0.0.1:{srv.port}")).release()
        (await up.open("POST", srv.url("/empty"), CIMultiDict(), b"", None)).release()
        (await up.open("DELETE", srv.url("/thing"), CIMultiDict(), b"", None)).release()
    host = f"127.0.0.1:{srv.port}"
    assert srv.requests == [
        f"GET / HTTP/1.1\r\nhost: {host}\r\n\r\n".encode(),
        f"POST /empty HTTP/1.1\r\nhost: {host}\r\ncontent-length: 0\r\n\r\n".encode(),
        f"DELETE /thing HTTP/1.1\r\nhost: {host}\r\n\r\n".encode(),
    ]


async def test_unicode_header_value_is_sent_as_utf8() -> None:
    async with serve(once(OK)) as srv, client() as up, asyncio.timeout(3):
        (await up.open("GET", srv.url(), CIMultiDict({"x-note": "héllo"}), b"", None)).release()
    assert "x-note: héllo\r\n".encode() in srv.requests[0]


@pytest.mark.parametrize(
    ("name", "value"),
    [("x-a", "v\r\nx-injected: 1"), ("x-a", "v\nx"), ("x-a", "v\rx"), ("x-a\r\nx-b", "v")],
)
async def test_header_with_cr_or_lf_is_refused(name: str, value: str) -> None:
    async with serve(keep_alive()) as srv, client(pool_size=1) as up, asyncio.timeout(3):
        with pytest.raises(UpstreamError, match="line break"):
            await up.open("GET", srv.url(), CIMultiDict({name: value}), b"", None)
        assert srv.connections == 0
        assert await fetch(up, srv.url()) == (200, b"hello")  # the only pool slot is still free


# -- failures ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_server_gone_before_headers_is_upstream_reset(how: str) -> None:
    async def handler(srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.read_request(reader)
        if how == "reset":
            reset(writer)

    async with serve(handler) as srv, client() as up, asyncio.timeout(3):
        with pytest.raises(UpstreamReset):
            await get(up, srv.url())
        assert srv.connections == 1  # a fresh connection is not retried


async def test_partial_head_then_close_is_upstream_reset() -> None:
    async with serve(once(b"HTTP/1.1 200 OK\r\nContent-Le")) as srv, client() as up, asyncio.timeout(3):
        with pytest.raises(UpstreamReset):
            await get(up, srv.url())


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_server_gone_mid_chunked_body_is_truncation(how: str) -> None:
    go = asyncio.Event()

    async def handler(srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await go.wait()
        if how == "reset":
            reset(writer)

    async with serve(handler) as srv, client() as up, asyncio.timeout(3):
        answer = await get(up, srv.url())
        chunks = answer.chunks()
        assert await anext(chunks) == b"hello"
        go.set()
        with pytest.raises(UpstreamTruncated):
            await anext(chunks)
        answer.release()


async def test_content_length_body_cut_short_is_truncation() -> None:
    async with serve(once(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")) as srv, client() as up:
        async with asyncio.timeout(3):
            answer = await get(up, srv.url())
            with pytest.raises(UpstreamTruncated):
                await answer.read()
            answer.release()


@pytest.mark.parametrize(
    "garbage",
    [
        b"HELLO WORLD\r\n\r\n",
        b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header Line\r\n\r\n",
        b"\x00\x01\x02\x03\r\n\r\n",
    ],
)
async def test_invalid_http_is_upstream_reset(garbage: bytes) -> None:
    async with serve(once(garbage, forever)) as srv, client() as up, asyncio.timeout(3):
        with pytest.raises(UpstreamReset):
            await get(up, srv.url())


async def test_invalid_chunk_framing_mid_body_is_an_upstream_error() -> None:
    response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZZ\r\n"
    async with serve(once(response, forever)) as srv, client() as up, asyncio.timeout(3):
        answer = await get(up, srv.url())
        with pytest.raises(UpstreamError):
            await answer.read()
        answer.release()


async def test_first_byte_timeout() -> None:
    async with serve(once(b"", forever)) as srv, client() as up, asyncio.timeout(3):
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout) as info:
            await get(up, srv.url(), timeout_ms=100)
        assert 0.09 < time.monotonic() - started < 1.5
        assert (info.value.status, info.value.cf_code) == (504, 2005)


async def test_slow_head_within_the_first_byte_timeout() -> None:
    async def handler(srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.read_request(reader)
        await asyncio.sleep(0.05)
        writer.write(OK)
        await writer.drain()

    async with serve(handler) as srv, client() as up, asyncio.timeout(3):
        answer = await get(up, srv.url(), timeout_ms=1000)
        assert await answer.read() == b"hello"
        answer.release()


async def test_head_wait_without_a_request_timeout_is_bounded_by_the_idle_timeout() -> None:
    async with serve(once(b"", forever)) as srv, client(idle_ms=150) as up, asyncio.timeout(1):
        with pytest.raises(UpstreamTimeout):
            await get(up, srv.url(), timeout_ms=None)


async def test_idle_timeout_mid_body() -> None:
    response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    async with serve(once(response, forever)) as srv, client(idle_ms=150) as up, asyncio.timeout(3):
        answer = await get(up, srv.url())
        chunks = answer.chunks()
        assert await anext(chunks) == b"hello"
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            await anext(chunks)
        assert 0.14 < time.monotonic() - started < 1.5
        answer.release()


async def test_idle_timeout_is_per_gap_not_per_body() -> None:
    async def handler(srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(6):
            await asyncio.sleep(0.05)
            writer.write(b"1\r\nx\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async with serve(handler) as srv, client(idle_ms=150) as up, asyncio.timeout(3):
        answer = await get(up, srv.url())
        assert await answer.read() == b"xxxxxx"  # 0.3 s in all, never 0.15 s without a byte
        answer.release()


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_refused_is_upstream_unavailable() -> None:
    async with client() as up, asyncio.timeout(3):
        with pytest.raises(UpstreamUnavailable) as info:
            await get(up, f"http://127.0.0.1:{_unused_port()}/v1/chat/completions")
        assert (info.value.status, info.value.cf_code) == (502, 2005)


# -- backpressure and the pool's semaphore -----------------------------------------------------------


async def test_large_body_with_a_slow_reader_is_intact_and_backpressured() -> None:
    size = 8 << 20
    payload = bytes(range(256)) * (size // 256)
    written = asyncio.Event()

    async def handler(srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        writer.write(payload)
        await writer.drain()
        written.set()

    async with serve(handler) as srv, client() as up, asyncio.timeout(10):
        answer = await get(up, srv.url())
        chunks = answer.chunks()
        received = [await anext(chunks)]
        await asyncio.sleep(0.2)
        assert not written.is_set()  # the client stopped reading: the server cannot push 8 MiB into it
        count = 0
        async for chunk in chunks:
            received.append(chunk)
            count += 1
            if count % 16 == 0:
                await asyncio.sleep(0.001)
        answer.release()
        body = b"".join(received)
        assert len(body) == size
        assert hashlib.sha256(body).digest() == hashlib.sha256(payload).digest()
        assert written.is_set()


async def test_release_twice_is_harmless() -> None:
    async with serve(keep_alive()) as srv, client(pool_size=1) as up, asyncio.timeout(3):
        first = await get(up, srv.url())
        await first.read()
        first.release()
        first.release()  # must not hand out a second slot
        held = await get(up, srv.url())
        waiting = asyncio.ensure_future(fetch(up, srv.url()))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # pool_size=1 and the slot is held
        await held.read()
        held.release()
        assert await waiting == (200, b"hello")


async def test_pool_slots_come_back_after_many_requests() -> None:
    async with serve(keep_alive()) as srv, client(pool_size=2) as up, asyncio.timeout(5):
        for _ in range(20):
            assert await fetch(up, srv.url()) == (200, b"hello")
        results = await asyncio.gather(*(fetch(up, srv.url()) for _ in range(20)))
        assert results == [(200, b"hello")] * 20
        assert srv.connections <= 2


async def test_pool_slots_come_back_after_releasing_unread_answers() -> None:
    slow_body = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"
    async with serve(keep_alive(slow_body)) as srv, client(pool_size=2) as up, asyncio.timeout(5):
        for _ in range(20):
            (await get(up, srv.url())).release()
        assert srv.connections == 20  # unfinished bodies are never reused


async def test_pool_slots_come_back_after_failures() -> None:
    async def flaky(srv: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await srv.read_request(reader)
        assert request is not None
        path = request.split(b" ")[1]
        if path == b"/reset":
            reset(writer)
        elif path == b"/garbage":
            writer.write(b"NOT HTTP\r\n\r\n")
        elif path == b"/stall":
            await forever()
        elif path == b"/truncated":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
            await writer.drain()
            return
        else:
            writer.write(OK)
        await writer.drain()

    refused = f"http://127.0.0.1:{_unused_port()}/"
    async with serve(flaky) as srv, client(pool_size=2) as up, asyncio.timeout(8):
        for _ in range(3):
            for path in ("/reset", "/garbage", "/stall"):
                with pytest.raises(UpstreamError):
                    await get(up, srv.url(path), timeout_ms=30)
            with pytest.raises(UpstreamUnavailable):
                await get(up, refused)
            with pytest.raises(UpstreamError):
                await up.open("GET", srv.url("/"), CIMultiDict({"x": "a\nb"}), b"", None)
            answer = await get(up, srv.url("/truncated"))
            with pytest.raises(UpstreamTruncated):
                await answer.read()
            answer.release()
        assert await asyncio.gather(*(fetch(up, srv.url("/ok")) for _ in range(6))) == [(200, b"hello")] * 6


async def test_cancelled_open_gives_its_slot_back() -> None:
    async with client(pool_size=1) as up, asyncio.timeout(3):
        async with serve(once(b"", forever)) as srv:
            task = asyncio.ensure_future(get(up, srv.url()))
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        async with serve(keep_alive()) as srv2:
            assert await fetch(up, srv2.url()) == (200, b"hello")


# -- the same cases on uvloop, which production installs ---------------------------------------------

_UVLOOP_CASES = [
    test_content_length_body,
    test_chunked_body_is_streamed_chunk_by_chunk,
    test_body_delimited_by_connection_close,
    test_100_continue_before_the_real_response,
    test_head_response_with_content_length_but_no_body_does_not_hang,
    test_keep_alive_reuses_one_connection,
    test_pooled_connection_closed_by_the_server_while_idle_is_replaced,
    test_idempotent_request_on_a_dropped_pooled_connection_is_retried_on_a_fresh_one,
    test_post_on_a_pooled_connection_dropped_after_reading_is_not_sent_twice,
    test_request_bytes,
    test_partial_head_then_close_is_upstream_reset,
    test_content_length_body_cut_short_is_truncation,
    test_invalid_chunk_framing_mid_body_is_an_upstream_error,
    test_first_byte_timeout,
    test_head_wait_without_a_request_timeout_is_bounded_by_the_idle_timeout,
    test_idle_timeout_mid_body,
    test_connection_refused_is_upstream_unavailable,
    test_large_body_with_a_slow_reader_is_intact_and_backpressured,
    test_release_twice_is_harmless,
    test_pool_slots_come_back_after_many_requests,
    test_pool_slots_come_back_after_failures,
    test_cancelled_open_gives_its_slot_back,
]


_UVLOOP_RESET = pytest.param(
    test_reset_during_a_close_delimited_body_is_truncation,
    id="reset_during_a_close_delimited_body_is_truncation",
)


@pytest.mark.parametrize(
    "case",
    [*(pytest.param(c, id=c.__name__.removeprefix("test_")) for c in _UVLOOP_CASES), _UVLOOP_RESET],
)
def test_on_uvloop(case: Callable[[], Awaitable[None]]) -> None:
    uvloop = pytest.importorskip("uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(case())  # type: ignore[arg-type]
