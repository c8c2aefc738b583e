"""The one place that talks HTTP to providers: a keep-alive HTTP/1.1 client on asyncio and llhttp.

Why not aiohttp's client: a profile of a bare aiohttp pass-through spent about three quarters of its CPU
per call in the client side (request objects, tracing hooks, timers, cookie and redirect machinery that a
gateway never uses). This client does only what a proxy needs: one write per request, llhttp (httptools)
for response framing, body chunks handed over as they arrive, a connect, first-byte and idle timeout,
and a pool that reuses connections. Every failure becomes an `errors.UpstreamError` kind here.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
import time
from collections.abc import AsyncIterator
from typing import cast
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict

from switchpoint.errors import UpstreamReset, UpstreamTimeout, UpstreamTruncated, UpstreamUnavailable

# Stop reading from a provider when this much body is buffered and not yet taken by the client.
_HIGH_WATER = 1 << 20
# An idle pooled connection older than this may have been closed by the provider: open a new one.
_KEEPALIVE_S = 15.0
_DEFAULT_PORTS = {"http": 80, "https": 443}
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
PoolKey = tuple[str, str, int]


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; serves one response at a time, then goes back to the pool if it can."""

    def __init__(self, key: PoolKey) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._reset_response()

    def _reset_response(self) -> None:
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.head: asyncio.Future[None] | None = None
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.complete = False
        self.got_bytes = False
        self.keep_alive = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self._informational = False

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamReset(f"Provider sent an invalid HTTP response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.complete or self.head is None:
            return
        if self.head.done() and not self._framed() and exc is None:
            self.on_message_complete()  # a body delimited by a clean close (a reset is a truncation)
            return
        kind = UpstreamTruncated if self.head.done() else UpstreamReset
        self._fail(kind())

    # -- llhttp callbacks --------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # 100 Continue and friends: wait for the real response
            self._informational = True
            self.raw_headers = []
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()  # only meaningful before the message completes
        if self.head is not None and not self.head.done():
            self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        self.complete = True
        self._wake()

    # -- used by the pool and the answer -----------------------------------------------------------

    def _framed(self) -> bool:
        return any(n.lower() in (b"content-length", b"transfer-encoding") for n, _ in self.raw_headers)

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        if self.head is not None and not self.head.done():
            self.head.set_exception(exc)
            self.head.exception()  # mark retrieved: the awaiting side may already be gone
        self._wake()

    def send(self, data: bytes) -> asyncio.Future[None]:
        assert self.transport is not None
        self._reset_response()
        self.head = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.head

    async def next_chunk(self, idle_s: float) -> bytes | None:
        """The next body piece; None at the end of the body."""
        while True:
            if self.chunks:
                chunk = self.chunks.popleft()
                self.buffered -= len(chunk)
                if self.buffered <= _HIGH_WATER and self.transport is not None and not self.closed:
                    self.transport.resume_reading()
                return chunk
            if self.complete:
                return None
            if self.error is not None:
                raise self.error
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(idle_s):
                    await self.waiter
            except TimeoutError:
                raise UpstreamTimeout(f"Provider sent nothing for {idle_s:g} s") from None
            finally:
                self.waiter = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class UpstreamAnswer:
    """An upstream response with its head read and body not yet; satisfies `routing.attempts.Answer`."""

    __slots__ = ("_conn", "_pool", "status", "headers", "_released")

    def __init__(self, conn: Connection, pool: Upstream) -> None:
        self._conn = conn
        self._pool = pool
        self.status = conn.status
        self.headers: CIMultiDict[str] = CIMultiDict(
            (n.decode("latin-1"), v.decode("latin-1")) for n, v in conn.raw_headers
        )
        self._released = False

    def no_body(self) -> None:
        self._conn.complete = True
        self._conn.keep_alive = False

    @property
    def retry_after(self) -> float | None:
        value = self.headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            return None  # an HTTP date: too rare from LLM providers to be worth parsing

    async def read(self) -> bytes:
        parts = [chunk async for chunk in self.chunks()]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def chunks(self) -> AsyncIterator[bytes]:
        idle = self._pool.idle_s
        while (chunk := await self._conn.next_chunk(idle)) is not None:
            yield chunk

    def release(self) -> None:
        """Back to the pool when the body was read to its end, closed otherwise; safe to call twice."""
        if self._released:
            return
        self._released = True
        self._pool.give_back(self._conn)


def _request_bytes(method: str, host: str, target: str, headers: CIMultiDict[str], body: bytes) -> bytes:
    lines = [f"{method} {target} HTTP/1.1\r\nhost: {host}\r\n"]
    for name, value in headers.items():
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            raise UpstreamUnavailable(f"Header {name!r} contains a line break and cannot be sent")
        lines.append(f"{name}: {value}\r\n")
    if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
        lines.append(f"content-length: {len(body)}\r\n")
    lines.append("\r\n")
    head = "".join(lines).encode("utf-8")
    return head + body if body else head


class Upstream:
    """The pool of provider connections, sized so that concurrency is never capped by accident."""

    def __init__(self, pool_size: int, connect_timeout_ms: int, idle_timeout_ms: int) -> None:
        self._limit = asyncio.Semaphore(pool_size)
        self.connect_s = connect_timeout_ms / 1000
        self.idle_s = idle_timeout_ms / 1000
        self._idle: dict[PoolKey, list[Connection]] = {}
        self._busy: set[Connection] = set()
        self._tls = ssl.create_default_context()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        for conn in self._busy:
            conn.close()
        self._idle.clear()

    async def open(
        self,
        method: str,
        url: str,
        headers: CIMultiDict[str],
        body: bytes,
        first_byte_timeout_ms: int | None,
    ) -> UpstreamAnswer:
        """Send the request and wait for the response head, within the first-byte timeout if any."""
        parts = urlsplit(url)
        scheme, hostname = parts.scheme, parts.hostname or ""
        port = parts.port or _DEFAULT_PORTS.get(scheme, 80)
        host = parts.netloc.rpartition("@")[2]
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        data = _request_bytes(method, host, target, headers, body)
        await self._limit.acquire()
        try:
            answer = await self._exchange((scheme, hostname, port), data, first_byte_timeout_ms, method)
        except BaseException:
            self._limit.release()
            raise
        if method == "HEAD":  # the head says how long a body would be, but none follows
            answer.no_body()
        return answer

    async def _exchange(
        self, key: PoolKey, data: bytes, first_byte_timeout_ms: int | None, method: str
    ) -> UpstreamAnswer:
        # Without a request timeout the idle timeout still bounds the wait for the head: no call waits forever.
        timeout = first_byte_timeout_ms / 1000 if first_byte_timeout_ms is not None else self.idle_s
        while True:
            conn, reused = await self._connection(key)
            self._busy.add(conn)
            try:
                async with asyncio.timeout(timeout):
                    await conn.send(data)
            except UpstreamReset:
                self._discard(conn)
                if reused and not conn.got_bytes and method in _IDEMPOTENT:
                    continue  # the provider closed an idle connection as we wrote: safe to send again
                raise  # a POST may have been read: only the attempt loop, which counts, may send it again
            except TimeoutError:
                self._discard(conn)
                raise UpstreamTimeout.first_byte(timeout * 1000) from None
            except BaseException:
                self._discard(conn)
                raise
            return UpstreamAnswer(conn, self)

    async def _connection(self, key: PoolKey) -> tuple[Connection, bool]:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < _KEEPALIVE_S:
                return conn, True
            conn.close()
        return await self._connect(key), False

    async def _connect(self, key: PoolKey) -> Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        tls = self._tls if scheme == "https" else None
        try:
            async with asyncio.timeout(self.connect_s):
                _, conn = await loop.create_connection(
                    lambda: Connection(key), host, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError:
            raise UpstreamTimeout(f"Could not connect to {host}:{port} within {self.connect_s:g} s") from None
        except socket.gaierror as exc:
            raise UpstreamUnavailable(f"Could not resolve provider host {host}: {exc.strerror}") from None
        except (OSError, ssl.SSLError) as exc:
            raise UpstreamUnavailable(f"Failed to connect to provider {host}:{port}: {exc}") from None
        return conn

    def _discard(self, conn: Connection) -> None:
        self._busy.discard(conn)
        conn.close()

    def give_back(self, conn: Connection) -> None:
        self._limit.release()
        self._busy.discard(conn)
        if conn.complete and conn.keep_alive and not conn.closed and conn.error is None:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(conn.key, []).append(conn)
        else:
            conn.close()
