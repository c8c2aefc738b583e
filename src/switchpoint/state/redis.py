"""Shared state in Redis, for several processes or machines: counters in one Lua script, cache by GET/SET.

Every counter call is one EVALSHA of `counters.lua` (loaded on first use, loaded again after NOSCRIPT),
so a check costs one round trip and is atomic across every client of the server. Windows follow the
Redis server's clock unless a test passes `now`. Keys live under a prefix (`sp:` by default): counters at
`sp:c:{technique}:{window_s}:{key}`, cache entries at `sp:k:{key}`. A multi-key call touches several keys,
so Redis Cluster is not supported; a single server (with replicas for failover) is.

Counters and cache use separate pipelined connections (`resp.py`), so a 25 MB cache entry in transit
never delays a rate-limit check. Every failure becomes `StateUnavailable`, and opens a circuit breaker
(`breaker.py`): calls fail fast, then one probe per `retry_interval_s` (doubling while it fails) reconnects,
so a dead or hung server costs one waiting call per retry and the gateway recovers without a restart.
Transitions are logged once each; `errors` counts failed calls.

Settlement refunds (`refund_soon`) are held for `REFUND_DELAY_S` and sent merged in one script call; extra
charges go at once (they must count before the next check). Refunds that never reached the server stay
held and go with the next flush (dropped only past a bound, with a log line); a batch sent but unanswered
is logged and not resent, since it may have run. What is held is flushed at `aclose`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from importlib.resources import files
from typing import TypeVar

from switchpoint.state.base import Charge, Decision, StateUnavailable, with_amount
from switchpoint.state.breaker import Breaker
from switchpoint.state.refunds import PendingRefunds
from switchpoint.state.resp import Arg, ConnectionLost, RedisAddress, Reply, ReplyError, RespClient, pack

_LUA = files("switchpoint.state").joinpath("counters.lua").read_text(encoding="utf-8")
_SHA = hashlib.sha1(_LUA.encode()).hexdigest()
_MAX_PACKED = 10_000
REFUND_DELAY_S = 0.02  # refunds wait this long to share a script call; a budget only errs strict meanwhile
_REFUND_BATCH = 500  # merged refunds per script call
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
        self._breaker = Breaker(retry_interval_s)
        self.errors = 0  # every call that raised StateUnavailable: a metric until Prometheus lands
        self._packed: dict[tuple[str, tuple[Charge, ...]], bytes] = {}
        self._refunds = PendingRefunds()
        self._refund_timer: asyncio.TimerHandle | None = None
        self._refund_urgent = False  # the armed timer is the no-delay one
        self._flushing: asyncio.Task[None] | None = None
        self._refunds_failing = False
        self._closing = False

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
        return self._breaker.closed

    async def consume(self, charges: Sequence[Charge], now: float | None = None) -> list[Decision]:
        return await self._decisions(charges, "consume", now)

    async def peek(self, charges: Sequence[Charge], now: float | None = None) -> list[Decision]:
        return await self._decisions(charges, "peek", now)

    async def _decisions(self, charges: Sequence[Charge], op: str, now: float | None) -> list[Decision]:
        command = self._evalsha(tuple(charges), op, now)
        reply = await self._run(lambda: self._script(command))
        fields: list[bytes] = reply.split() if isinstance(reply, bytes) else []
        if len(fields) != 1 + 3 * len(charges):
            raise StateUnavailable(f"redis: unexpected reply to the counters script: {reply!r}")
        try:
            at = int(fields[0]) / 1000
            return [
                Decision(fields[i] == b"1", charge.limit, float(fields[i + 1]), int(fields[i + 2]) / 1000, at)
                for charge, i in zip(charges, range(1, len(fields), 3), strict=True)
            ]
        except ValueError:
            raise StateUnavailable(f"redis: unexpected reply to the counters script: {reply!r}") from None

    async def refund(self, charges: Sequence[Charge], at: float, now: float | None = None) -> None:
        at_ms = int(at * 1000)
        command = self._refund_command([(c, at_ms) for c in charges], now)
        await self._run(lambda: self._script(command))

    def refund_soon(self, charges: Sequence[Charge], at: float) -> None:
        at_ms, urgent = int(at * 1000), False
        for charge in charges:
            self._refunds.add(charge, at_ms)
            urgent = urgent or charge.amount < 0
        self._arm(urgent)

    def refund_one(self, charge: Charge, amount: float, at: float) -> None:
        self.refund_soon((with_amount(charge, amount),), at)

    def _arm(self, urgent: bool) -> None:
        """Start the flush timer (again without delay for an extra charge); one flush runs at a time."""
        if self._closing:
            return  # `aclose` sends what is held
        if self._flushing is not None:
            self._refund_urgent = self._refund_urgent or urgent  # the running flush re-arms when it ends
            return
        if self._refund_timer is not None:
            if not urgent or self._refund_urgent:
                return
            self._refund_timer.cancel()
        loop = asyncio.get_running_loop()
        self._refund_urgent = urgent
        self._refund_timer = loop.call_later(0 if urgent else REFUND_DELAY_S, self._start_flush)

    def _start_flush(self) -> None:
        self._refund_timer = None
        self._flushing = asyncio.ensure_future(self._flush_then_rearm())

    async def _flush_then_rearm(self) -> None:
        """One batch per timer: refunds arriving while it travels wait for the next one, so they merge."""
        try:
            await self._send_batch()
        finally:
            self._flushing, urgent = None, self._refund_urgent
            self._refund_urgent = False
            if self._refunds and self._breaker.closed:
                self._arm(urgent)
            elif self._refunds and not self._closing:  # try again when the breaker next lets a probe through
                loop = asyncio.get_running_loop()
                self._refund_timer = loop.call_later(self._retry_interval_s, self._start_flush)

    async def flush(self) -> None:
        while self._refunds and await self._send_batch():
            pass
        self._refunds_lost(None)

    async def _send_batch(self) -> bool:
        """Send up to `_REFUND_BATCH` held refunds; False when they did not go through."""
        batch = self._refunds.take(_REFUND_BATCH)
        command = self._refund_command(batch, None)
        try:
            await self._run(lambda: self._script(command))
        except StateUnavailable as exc:
            if _unsent(exc):
                self._refunds.put_back(batch)
                self._refunds_lost(exc)
            else:  # it may have run: sending it again could give the money back twice
                log.error("redis state: %d budget refunds may not have arrived (%s); not resent", len(batch), exc)
            return False
        if self._refunds_failing:
            self._refunds_failing = False
            log.warning("redis state: held budget refunds delivered")
        return True

    def _refunds_lost(self, exc: StateUnavailable | None) -> None:
        """Log the first undelivered flush of an outage, and any refunds the bound made us drop."""
        if exc is not None and not self._refunds_failing:
            self._refunds_failing = True
            log.warning("redis state: %d budget refunds held for retry: %s", len(self._refunds), exc)
        if self._refunds.dropped:
            log.error("redis state: %d budget refunds dropped (too many held)", self._refunds.dropped)
            self._refunds.dropped = 0

    async def get(self, key: str) -> bytes | None:
        value = await self._run(lambda: self._cache.call("GET", self._prefix + "k:" + key))
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        ttl_ms = int(ttl_s * 1000)
        if ttl_ms > 0:
            await self._run(lambda: self._cache.call("SET", self._prefix + "k:" + key, value, "PX", ttl_ms))

    async def aclose(self) -> None:
        """Send the held refunds (one try each way), then close both connections."""
        self._closing = True
        if self._refund_timer is not None:
            self._refund_timer.cancel()
            self._refund_timer = None
        if self._flushing is not None:
            await asyncio.wait([self._flushing])
        if self._refunds:
            await self.flush()
        if self._refunds:
            log.error("redis state: %d budget refunds not delivered at shutdown", len(self._refunds))
        await self._counters.aclose()
        await self._cache.aclose()

    async def _script(self, command: bytes) -> Reply:
        try:
            return await self._counters.send(command)
        except ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        await self._counters.call("SCRIPT", "LOAD", _LUA)  # a restarted or flushed server forgot it
        return await self._counters.send(command)

    def _evalsha(self, charges: tuple[Charge, ...], op: str, now: float | None) -> bytes:
        """The packed command. On the server's clock it depends on the charges alone, so the usual call (one
        rate-limit charge that `Limits` reuses) is packed once and then found in a bounded dict."""
        if now is None:
            found = self._packed.get((op, charges))
            if found is not None:
                return found
        args = self._keys(charges, op, now)
        for c in charges:
            args += (repr(float(c.amount)), repr(float(c.limit)), c.window_s * 1000, c.technique)
        command = pack(tuple(args))
        if now is None:
            if len(self._packed) >= _MAX_PACKED:
                self._packed.clear()
            self._packed[(op, charges)] = command
        return command

    def _refund_command(self, refunds: Sequence[tuple[Charge, int]], now: float | None) -> bytes:
        """A refund carries, where a check has its limit, the time (ms) its amounts were consumed."""
        args = self._keys([charge for charge, _ in refunds], "refund", now)
        for c, at_ms in refunds:
            args += (repr(float(c.amount)), at_ms, c.window_s * 1000, c.technique)
        return pack(tuple(args))

    def _keys(self, charges: Sequence[Charge], op: str, now: float | None) -> list[Arg]:
        prefix = self._prefix
        args: list[Arg] = ["EVALSHA", _SHA, len(charges)]
        args += [f"{prefix}c:{c.technique}:{c.window_s}:{c.key}" for c in charges]
        args += (op, "" if now is None else int(now * 1000))
        return args

    async def _run(self, call: Callable[[], Awaitable[T]]) -> T:
        """One call through the breaker: refused at once while it is open, the probe when it half-opens."""
        admission = self._breaker.admit()
        if admission == "refuse":
            self.errors += 1
            raise StateUnavailable("redis is unavailable (retrying shortly)")
        probe, settled = admission == "probe", False
        try:
            result = await call()
            settled = True
        except (ConnectionLost, ReplyError) as exc:
            settled = True
            self.errors += 1
            if self._breaker.failed(probe):
                log.warning("redis state unavailable: %s", exc)
            raise StateUnavailable(f"redis: {exc}") from exc
        finally:
            if probe and not settled:
                self._breaker.abandon()
        if self._breaker.succeeded():
            log.warning("redis state recovered")
        return result


def _unsent(exc: StateUnavailable) -> bool:
    """The call never reached the server (refused by the breaker, or no connection). An error reply is no
    such proof (a script can fail halfway), and neither is a connection lost with the call on it."""
    cause = exc.__cause__
    return cause is None or (isinstance(cause, ConnectionLost) and cause.unsent)
