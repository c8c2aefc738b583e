"""Shared state in Redis, for several processes or machines: counters in one Lua script, cache by GET/SET.

Every counter call is one EVALSHA of `counters.lua` (loaded on first use, loaded again after NOSCRIPT),
so a check costs one round trip and is atomic across every client of the server. Windows follow the
Redis server's clock unless a test passes `now`. Keys live under a prefix (`sp:` by default): counters at
`sp:c:{technique}:{window_s}:{key}`, cache entries at `sp:k:{key}`. A multi-key call touches several keys,
so Redis Cluster is not supported; a single server (with replicas for failover) is.

Counters and cache use separate pipelined connections (`resp.py`), so a 25 MB cache entry in transit
never delays a rate-limit check. Every failure becomes `StateUnavailable`. After one, calls fail fast for
`retry_interval_s` (no socket wait per request while the server is down), then the next call reconnects;
the gateway recovers without a restart. Transitions are logged once each; `errors` counts failed calls.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib.resources import files
from typing import TypeVar

from switchpoint.state.base import Charge, Decision, StateUnavailable
from switchpoint.state.resp import Arg, ConnectionLost, RedisAddress, Reply, ReplyError, RespClient, pack

_LUA = files("switchpoint.state").joinpath("counters.lua").read_text(encoding="utf-8")
_SHA = hashlib.sha1(_LUA.encode()).hexdigest()
_MAX_PACKED = 10_000
log = logging.getLogger("switchpoint.state")
T = TypeVar("T")


class RedisState:
    """Counters and cache on a Redis server; `from_url` is the usual way to build one."""

    def __init__(
        self, counters: RespClient, cache: RespClient, prefix: str = "sp:", retry_interval_s: float = 0.5
    ) -> None:
        self._counters = counters
        self._cache = cache
        self._prefix = prefix
        self._retry_interval_s = retry_interval_s
        self._down_until: float | None = None  # monotonic time before which calls fail fast
        self.errors = 0  # every call that raised StateUnavailable: a metric until Prometheus lands
        self._packed: dict[tuple[str, tuple[Charge, ...]], bytes] = {}

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "sp:", timeout_s: float = 1.0, retry_interval_s: float = 0.5
    ) -> RedisState:
        """`redis://[[user]:password@]host[:port][/db]`, `rediss://...` (TLS) or `unix:///path.sock`.
        `timeout_s` bounds connecting and the wait for a reply."""
        address = RedisAddress.from_url(url)
        return cls(RespClient(address, timeout_s), RespClient(address, timeout_s), prefix, retry_interval_s)

    @property
    def available(self) -> bool:
        return self._down_until is None

    async def consume(self, charges: Sequence[Charge], now: float | None = None) -> list[Decision]:
        return await self._decisions(charges, "consume", now)

    async def peek(self, charges: Sequence[Charge], now: float | None = None) -> list[Decision]:
        return await self._decisions(charges, "peek", now)

    async def _decisions(self, charges: Sequence[Charge], op: str, now: float | None) -> list[Decision]:
        reply = await self._run(lambda: self._script(charges, op, now, None))
        if not isinstance(reply, list) or len(reply) != 1 + 3 * len(charges):
            raise StateUnavailable(f"redis: unexpected reply to the counters script: {reply!r}")
        at = _number(reply[0]) / 1000
        return [
            Decision(reply[i] == 1, charge.limit, _number(reply[i + 1]), _number(reply[i + 2]) / 1000, at)
            for charge, i in zip(charges, range(1, len(reply), 3), strict=True)
        ]

    async def refund(self, charges: Sequence[Charge], at: float, now: float | None = None) -> None:
        await self._run(lambda: self._script(charges, "refund", now, at))

    async def get(self, key: str) -> bytes | None:
        value = await self._run(lambda: self._cache.call("GET", self._prefix + "k:" + key))
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        ttl_ms = int(ttl_s * 1000)
        if ttl_ms > 0:
            await self._run(lambda: self._cache.call("SET", self._prefix + "k:" + key, value, "PX", ttl_ms))

    async def aclose(self) -> None:
        await self._counters.aclose()
        await self._cache.aclose()

    async def _script(self, charges: Sequence[Charge], op: str, now: float | None, at: float | None) -> Reply:
        command = self._evalsha(tuple(charges), op, now, at)
        try:
            return await self._counters.send(command)
        except ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        await self._counters.call("SCRIPT", "LOAD", _LUA)  # a restarted or flushed server forgot it
        return await self._counters.send(command)

    def _evalsha(self, charges: tuple[Charge, ...], op: str, now: float | None, at: float | None) -> bytes:
        """The packed command. On the server's clock it depends on the charges alone, so the usual call (one
        rate-limit charge that `Limits` reuses) is packed once and then found in a bounded dict."""
        reusable = now is None and at is None
        if reusable:
            found = self._packed.get((op, charges))
            if found is not None:
                return found
        prefix = self._prefix
        args: list[Arg] = ["EVALSHA", _SHA, len(charges)]
        args += [f"{prefix}c:{c.technique}:{c.window_s}:{c.key}" for c in charges]
        args += (op, _ms(now), _ms(at))
        for c in charges:
            args += (repr(float(c.amount)), repr(float(c.limit)), c.window_s * 1000, c.technique)
        command = pack(tuple(args))
        if reusable:
            if len(self._packed) >= _MAX_PACKED:
                self._packed.clear()
            self._packed[(op, charges)] = command
        return command

    async def _run(self, call: Callable[[], Awaitable[T]]) -> T:
        if self._down_until is not None and time.monotonic() < self._down_until:
            self.errors += 1
            raise StateUnavailable("redis is unavailable (retrying shortly)")
        try:
            result = await call()
        except (ConnectionLost, ReplyError) as exc:
            self._failed(exc)
            raise StateUnavailable(f"redis: {exc}") from exc
        if self._down_until is not None:
            self._down_until = None
            log.warning("redis state recovered")
        return result

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        if self._down_until is None:
            log.warning("redis state unavailable: %s", exc)
        self._down_until = time.monotonic() + self._retry_interval_s


def _ms(seconds: float | None) -> str | int:
    return "" if seconds is None else int(seconds * 1000)


def _number(reply: Reply) -> float:
    if isinstance(reply, int):
        return float(reply)
    if isinstance(reply, bytes):
        return float(reply)
    raise StateUnavailable(f"redis: expected a number, got {reply!r}")
