"""The one place that talks HTTP to providers: a sized keep-alive pool, timeouts, and error mapping.

Every aiohttp client exception is turned into an `errors.UpstreamError` kind by `map_upstream_errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from switchpoint.errors import (
    UpstreamError,
    UpstreamReset,
    UpstreamTimeout,
    UpstreamTruncated,
    UpstreamUnavailable,
)


@contextlib.contextmanager
def map_upstream_errors() -> Iterator[None]:
    """Map the most specific aiohttp failure to our tree; anything else is a bug and propagates."""
    try:
        yield
    except UpstreamError:
        raise
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise UpstreamTimeout() from exc
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamUnavailable(f"Failed to connect to provider: {exc.os_error.strerror or exc}") from exc
    except aiohttp.ClientPayloadError as exc:
        raise UpstreamTruncated() from exc
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, ConnectionError) as exc:
        raise UpstreamReset() from exc
    except aiohttp.ClientResponseError as exc:
        raise UpstreamReset(f"Provider sent an invalid response: {exc.message}") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamUnavailable(f"Failed to get response from provider: {exc}") from exc


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: too rare from LLM providers to be worth parsing


@dataclass(slots=True)
class UpstreamAnswer:
    """An upstream response with headers read and body unread; satisfies `routing.attempts.Answer`."""

    response: aiohttp.ClientResponse

    @property
    def status(self) -> int:
        return self.response.status

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        return self.response.headers

    @property
    def retry_after(self) -> float | None:
        return _retry_after(self.response.headers)

    def release(self) -> None:
        self.response.close()

    async def read(self) -> bytes:
        with map_upstream_errors():
            return await self.response.read()

    async def chunks(self) -> AsyncIterator[bytes]:
        with map_upstream_errors():
            async for chunk in self.response.content.iter_any():
                yield chunk


class Upstream:
    """Owns the ClientSession; sized so that concurrency is never capped by accident (DESIGN.md §5)."""

    def __init__(self, pool_size: int, connect_timeout_ms: int, idle_timeout_ms: int) -> None:
        self._pool_size = pool_size
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=connect_timeout_ms / 1000,
            sock_read=idle_timeout_ms / 1000,
        )
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._pool_size,
            limit_per_host=self._pool_size,
            keepalive_timeout=30,
            ttl_dns_cache=300,
            enable_cleanup_closed=False,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def open(
        self,
        method: str,
        url: str,
        headers: CIMultiDict[str],
        body: bytes,
        first_byte_timeout_ms: int | None,
    ) -> UpstreamAnswer:
        """Send the request and wait for the response head, within the first-byte timeout if any."""
        assert self._session is not None, "Upstream.start() was not awaited"
        with map_upstream_errors():
            request = self._session.request(method, url, headers=headers, data=body or None)
            if first_byte_timeout_ms is None:
                response = await request
            else:
                async with asyncio.timeout(first_byte_timeout_ms / 1000):
                    response = await request
        return UpstreamAnswer(response)
