"""The per-call `Exchange`, the `Runtime` it runs against, and the log record it becomes.

One Exchange carries a call from socket to log record; every stage reads it and adds to it, and
nothing else holds per-call state.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from multidict import CIMultiDict

from switchpoint.auth import Snapshot
from switchpoint.cache import CacheDirective, Recorder, ResponseCache
from switchpoint.config import Config, GatewayConfig
from switchpoint.exchange.options import RequestOptions
from switchpoint.formats.translator import Translator
from switchpoint.formats.usage import Usage
from switchpoint.limits import Limits, RateDecision, Reservation, RouteLimiter
from switchpoint.observability import Metrics
from switchpoint.pricing import PriceBook
from switchpoint.providers.base import Dialect, Provider
from switchpoint.providers.registry import Registry
from switchpoint.routing.compile import RouteTable
from switchpoint.upstream import Upstream

# Bodies larger than this are logged truncated, as Cloudflare does at 10 MB.
MAX_LOGGED_BODY = 10 * 1024 * 1024
_NO_USAGE = Usage()
# Every key of a log record: the `logs` columns in their order, then `error_kind` (for the metrics).
# `log_record` fills in a copy: CPython builds a dict display this large key by key, growing the dict as it
# goes, which costs ~6k instructions more than copying these keys and setting their values.
_RECORD: dict[str, Any] = dict.fromkeys(
    (
        "id", "created_at", "gateway", "account", "provider", "model", "method", "path", "surface",
        "status_code", "success", "cached", "stream", "attempts", "step", "tokens_in", "tokens_out", "cost",
        "custom_cost", "duration_ms", "ttfb_ms", "event_id", "metadata", "request_body", "response_body",
        "request_size", "response_size", "error", "user_agent", "feedback", "score", "route", "route_path",
        "error_kind", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
    )
)  # fmt: skip
_LOW_48 = (1 << 48) - 1
_UUID_FORMAT = "%08x-%04x-%04x-%04x-%012x"
_rng = random.Random()  # seeded from os.urandom, and again in every forked worker so ids never repeat
os.register_at_fork(after_in_child=_rng.seed)
_random_bits = _rng.getrandbits


def uuid7() -> str:
    """RFC 9562 UUIDv7 (time-ordered) as lowercase text, the shape of Cloudflare's `cf-aig-log-id`."""
    ms = time.time_ns() // 1_000_000
    rand = _random_bits(74)  # ids need uniqueness, not secrecy: no syscall per call
    # 48-bit ms | version 7 and 12 random bits | variant 0b10 and 62 random bits, formatted in one step
    rand_b = (0b10 << 14) | ((rand >> 48) & 0x3FFF)
    return _UUID_FORMAT % (ms >> 16, ms & 0xFFFF, 0x7000 | (rand >> 62), rand_b, rand & _LOW_48)


@dataclass(slots=True)
class Runtime:
    """What every call needs, built once by the composition root; `snapshot` is swapped on change."""

    config: Config
    registry: Registry
    upstream: Upstream
    submit_log: Callable[[dict[str, Any]], None]
    prices: PriceBook
    metrics: Metrics
    limiter: RouteLimiter
    limits: Limits
    cache: ResponseCache
    snapshot: Snapshot = field(default_factory=Snapshot)
    routes: RouteTable = field(default_factory=RouteTable)  # swapped whole when a deployment lands


@dataclass(frozen=True, slots=True)
class Target:
    """One concrete upstream request: where it goes and what it carries."""

    provider: Provider
    url: str
    body: bytes
    model: str | None
    path: str  # the provider-relative path, for stream-terminator rules
    headers: CIMultiDict[str] | None = None  # extra headers for this target only (universal steps)
    translator: Translator | None = None  # set when the client speaks another dialect than the provider
    strip_usage: bool = False  # the gateway asked for stream usage the client did not: hide that chunk
    max_tokens: int | None = None  # the request's own output cap, when its plan read it: the budget holds that


@dataclass(slots=True)
class Exchange:
    runtime: Runtime
    gateway_id: str
    gateway: GatewayConfig
    account: str
    surface: str  # passthrough | compat | universal
    method: str
    path: str
    options: RequestOptions
    client_dialect: str  # "cloudflare" | "openai" | "anthropic": how gateway errors are rendered
    body: bytes = b""
    user_agent: str | None = None
    log_id: str = field(default_factory=uuid7)
    created_at: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter)
    provider: str | None = None
    model: str | None = None
    stream: bool = False
    status: int = 0
    attempts: int = 0
    step: int | None = None
    ttfb: float | None = None
    usage: Usage | None = None
    response_body: bytes | None = None
    response_size: int = 0
    error: str | None = None
    stream_dialect: Dialect | None = None
    error_kind: str | None = None  # snake_case error class for metrics: upstream_timeout, rate_limited...
    route: str | None = None  # dynamic route name, version and the element ids walked, for the log
    route_path: tuple[str, ...] = ()
    route_charges: tuple[Any, ...] = ()  # budget elements passed: each is charged the real cost afterwards
    token_id: str | None = None  # the gateway token that authenticated the call
    rate: RateDecision | None = None  # its rate-limit bucket after this call, for RateLimit-* headers
    reservation: Reservation | None = None
    cache_directive: CacheDirective | None = None
    cache_status: str | None = None  # HIT | MISS on cacheable calls
    cached: bool = False
    recorder: Recorder | None = None  # collects what the client gets, for the cache
    response_headers: CIMultiDict[str] | None = None  # what the relay sent, for the cache

    @property
    def event_id(self) -> str:
        return self.options.event_id or self.log_id

    def mark_first_byte(self) -> None:
        if self.ttfb is None:
            self.ttfb = time.perf_counter() - self.started

    def log_record(self) -> dict[str, Any]:
        """The row for the log store, every column of it (the writer reads them in one step), then `error_kind`
        and the cache and reasoning token counts for the metrics; bodies only when payload collection is on."""
        options = self.options
        payload = options.collect_payload
        usage = self.usage or _NO_USAGE
        if self.cached:  # a cache hit spends nothing: no price to look up
            cost: float | None = 0.0
            custom = options.custom_cost is not None
        else:
            priced = self.runtime.prices.cost(self.provider, self.model, self.usage, options.custom_cost)
            cost, custom = priced.cost, priced.custom
        status, ttfb, body, response_body = self.status, self.ttfb, self.body, self.response_body
        record = _RECORD.copy()  # feedback and score stay None: the logs API sets them later
        record["id"] = self.log_id
        record["created_at"] = self.created_at
        record["gateway"] = self.gateway_id
        record["account"] = self.account
        record["provider"] = self.provider
        record["model"] = self.model
        record["method"] = self.method
        record["path"] = self.path
        record["surface"] = self.surface
        record["status_code"] = status
        record["success"] = 200 <= status < 300 and self.error is None
        record["cached"] = self.cached
        record["stream"] = self.stream
        record["attempts"] = self.attempts
        record["step"] = self.step
        record["tokens_in"] = usage.tokens_in
        record["tokens_out"] = usage.tokens_out
        record["cost"] = cost
        record["custom_cost"] = custom
        record["duration_ms"] = (time.perf_counter() - self.started) * 1000
        record["ttfb_ms"] = ttfb * 1000 if ttfb is not None else None
        record["event_id"] = options.event_id or self.log_id
        record["metadata"] = options.metadata
        record["request_body"] = body[:MAX_LOGGED_BODY] if payload else None
        record["response_body"] = response_body[:MAX_LOGGED_BODY] if payload and response_body is not None else None
        record["request_size"] = len(body)
        record["response_size"] = self.response_size
        record["error"] = self.error
        record["user_agent"] = self.user_agent
        record["route"] = self.route
        record["route_path"] = (">".join(self.route_path) or None) if self.route_path else None
        record["error_kind"] = self.error_kind
        record["cache_read_tokens"] = usage.cache_read_tokens  # for the token metrics: not columns of the log
        record["cache_write_tokens"] = usage.cache_write_tokens
        record["reasoning_tokens"] = usage.reasoning_tokens
        return record

    def finish(self) -> dict[str, Any]:
        """Metrics count every call; the log store only those whose logging is on. Returns the record."""
        record = self.log_record()
        self.runtime.metrics.observe(record)
        if self.options.collect_log:
            self.runtime.submit_log(record)
        return record
