"""Prometheus metrics for the gateway, in a registry of their own, fed one finished log record per call.

`Metrics.observe(record)` takes the dict `Exchange.log_record()` builds and updates every per-call series;
label children are bound once per (gateway, provider, model, status) and cached, so a call costs a dict
lookup and a handful of increments. `Metrics.render()` gives the body and content type for `GET /metrics`.

Labels that clients control (`model`, `provider`) are capped: past `max_models` / `max_providers` distinct
values a new one is reported as `other`, so a client cycling model names cannot grow memory without bound.
A missing value is reported as `none`.

Processes. Each worker process has its own registry, so with `serve --workers N` a scrape reaches whichever
worker accepted the connection and sees only that worker's counts. To aggregate across workers, set
`PROMETHEUS_MULTIPROC_DIR` to an empty, writable directory in the environment *before* starting switchpoint
(prometheus-client chooses its storage when first imported) and call `reset_multiprocess_dir()` once in the
parent before forking: counters and histograms are then written to per-process files there and `render()`
sums the files of all workers. In that mode the log-writer series (queue depth, spool bytes, record outcomes)
and process metrics still describe only the worker that answered, since they are read live, not stored.
"""

from __future__ import annotations

import glob
import logging
import os
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

log = logging.getLogger("switchpoint.observability")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# 0.5 ms (a cache hit) ... 120 s (a long reasoning stream)
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)
LOG_OUTCOMES = ("accepted", "written", "spooled", "dropped", "rejected")
STATE_FEATURES = ("rate_limit", "budget", "cache")
# record key -> `direction` label; the cache and reasoning counts are parts of `in` / `out`, not extra to them
TOKEN_DIRECTIONS = (
    ("tokens_in", "in"),
    ("tokens_out", "out"),
    ("cache_read_tokens", "cache_read"),
    ("cache_write_tokens", "cache_write"),
    ("reasoning_tokens", "reasoning"),
)
_TOKEN_FIELDS = tuple(enumerate(field for field, _ in TOKEN_DIRECTIONS))
# `error_kind` values (snake_case GatewayError names) that are the gateway's own limits
LIMIT_KINDS = {"rate_limited": "rate_limit", "budget_exceeded": "budget"}
NONE = "none"
OTHER = "other"
_SERIES_LIMIT = 10_000  # cached bindings, keyed by raw values; cleared (and rebuilt on demand) past this


def multiprocess_dir() -> str | None:
    """The directory prometheus-client's multiprocess mode writes to, when that mode is active."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return path if path and getattr(values.ValueClass, "_multiprocess", False) else None


def reset_multiprocess_dir(path: str | None = None) -> None:
    """Delete the metric files a previous run left behind; call once, in the parent, before forking workers."""
    directory = path or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        for name in glob.glob(os.path.join(directory, "*.db")):
            os.remove(name)


class _Capped:
    """Label values of one client-controlled label: the first `limit` distinct ones, then `other`."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: object) -> str:
        if value is None or value == "":
            return NONE
        text = str(value)
        if text in self._seen:
            return text
        if len(self._seen) >= self._limit:
            return OTHER
        self._seen.add(text)
        return text


def _status_class(status: object) -> str:
    if isinstance(status, int) and 100 <= status < 600:
        return f"{status // 100}xx"
    return NONE


def error_kind(record: Mapping[str, Any]) -> str | None:
    """What went wrong, or None for a success: the record's `error_kind` when the pipeline set one, else a
    kind read from the status (`client_disconnected`, `stream_error` for a failure after a 2xx head,
    `http_4xx`, `http_5xx`, `no_status`)."""
    status = record.get("status_code")
    error = record.get("error")
    ok = isinstance(status, int) and 100 <= status < 400
    if ok and error is None:
        return None
    kind = record.get("error_kind")
    if isinstance(kind, str) and kind:
        return kind
    if not isinstance(status, int) or status <= 0:
        return "no_status"
    if status == 499:
        return "client_disconnected"
    if ok:
        return "stream_error"
    return f"http_{status // 100}xx"


Add = Callable[[float], None]


def _adder(child: Counter) -> Add:
    """The child's raw value increment: skips the public `inc()`'s per-call checks (exemplars, sign), which
    cost more than the addition; callers pass only positive amounts. Falls back to `inc` if the internals move."""
    return _value_adder(getattr(child, "_value", None), child.inc)


def _is_local(value: Any) -> bool:
    """A single-process value: a float behind a mutex, which `_value_adder` may add to directly."""
    return type(value) is values.MutexValue and type(getattr(value, "_value", None)) is float


def _value_adder(value: Any, fallback: Add) -> Add:
    """`value.inc`; for the single-process float value, an add without its mutex: every increment comes from
    the event loop's one thread (`Metrics.observe`) and a scrape reads on that thread too, so the lock only
    costs. Multiprocess values (files) keep their own `inc`."""
    if _is_local(value):

        def add(amount: float) -> None:
            value._value += amount

        return add
    inc = getattr(value, "inc", None)
    return inc if callable(inc) else fallback


def _histogram_observer(child: Histogram) -> Add:
    """The child's `observe`, bisecting its bounds once instead of the public linear scan; for the
    single-process float values, the sum and the bucket are added to in one call (see `_value_adder`)."""
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if bounds is None or buckets is None or total is None:  # internals moved: stay correct, if slower
        return child.observe
    bounds = list(bounds)
    if all(_is_local(value) for value in (total, *buckets)):

        def observe_local(seconds: float) -> None:
            total._value += seconds
            buckets[bisect_left(bounds, seconds)]._value += 1

        return observe_local
    adds = [_value_adder(bucket, bucket.inc) for bucket in buckets]
    add_sum = _value_adder(total, total.inc)

    def observe(seconds: float) -> None:
        add_sum(seconds)
        adds[bisect_left(bounds, seconds)](1)

    return observe


class _Series:
    """The children of every per-call metric for one (gateway, provider, model, status)."""

    __slots__ = (
        "cache_hits", "cost", "duration", "failed", "gateway", "metrics", "model", "provider", "requests", "tokens",
        "ttfb",
    )  # fmt: skip

    def __init__(self, metrics: Metrics, gateway: str, provider: str, model: str, status: object) -> None:
        self.metrics, self.gateway, self.provider, self.model = metrics, gateway, provider, model
        self.requests = _adder(metrics.requests.labels(gateway, provider, model, _status_class(status)))
        self.duration = _histogram_observer(metrics.duration.labels(gateway, provider))
        self.ttfb = _histogram_observer(metrics.first_byte.labels(gateway, provider))
        self.tokens: list[Add | None] = [None] * len(TOKEN_DIRECTIONS)  # bound on first use
        self.cost = _adder(metrics.cost.labels(gateway, provider, model))
        self.cache_hits = _adder(metrics.cache_hits.labels(gateway))
        self.failed = not (isinstance(status, int) and 100 <= status < 400)

    def token_adder(self, index: int) -> Add:
        labels = (self.gateway, self.provider, self.model, TOKEN_DIRECTIONS[index][1])
        add = self.tokens[index] = _adder(self.metrics.tokens.labels(*labels))
        return add


class _CallbackCollector(Collector):
    """Reads counts another component keeps itself, at scrape time, through `source` (None: nothing yet)."""

    what = "counters"

    def __init__(self, source: Callable[[], Mapping[str, int]] | None = None) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        if self.source is None:
            return
        try:
            counts = self.source()
        except Exception:  # a broken callback must not break the whole scrape
            log.exception("%s failed", self.what)
            return
        yield from self.families(counts)

    def families(self, counts: Mapping[str, int]) -> Iterator[Metric]:
        raise NotImplementedError


class LogWriterCollector(_CallbackCollector):
    """The log writer's own counts (`LogWriter.counters()`)."""

    what = "log writer counters"

    def families(self, counts: Mapping[str, int]) -> Iterator[Metric]:
        records = CounterMetricFamily(
            "switchpoint_log_records", "Log records by outcome in this process's log writer", labels=("outcome",)
        )
        for outcome in LOG_OUTCOMES:
            records.add_metric((outcome,), counts.get(outcome, 0))
        yield records
        yield GaugeMetricFamily(
            "switchpoint_log_queue_depth", "Records waiting in the log queue", counts.get("queue_depth", 0)
        )
        yield GaugeMetricFamily(
            "switchpoint_log_spool_bytes", "Bytes of log records spooled to disk", counts.get("spool_bytes", 0)
        )


class StateCollector(_CallbackCollector):
    """Calls that met unreachable shared state (Redis), per feature, from the counts `Limits.failures` and
    `ResponseCache.failures` keep (each such call followed the feature's fail policy)."""

    what = "state failure counters"

    def families(self, counts: Mapping[str, int]) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "switchpoint_state_unavailable",
            "Calls whose rate limit, budget or cache state could not be reached (the fail policy applied)",
            labels=("feature",),
        )
        for feature in STATE_FEATURES:
            family.add_metric((feature,), counts.get(feature, 0))
        yield family


class Metrics:
    """Every gateway metric in one private `CollectorRegistry` (never the global one)."""

    def __init__(
        self,
        log_counters: Callable[[], Mapping[str, int]] | None = None,
        *,
        max_models: int = 1000,
        max_providers: int = 100,
    ) -> None:
        self.registry = CollectorRegistry()
        self._multiproc = multiprocess_dir()
        self._register_metrics(self.registry)
        self.log_writer = LogWriterCollector(log_counters)
        self.registry.register(self.log_writer)
        self.state = StateCollector()  # its source is set once the limits and the cache exist
        self.registry.register(self.state)
        if self._multiproc is None:
            ProcessCollector(registry=self.registry)
        self._model = _Capped(max_models)
        self._provider = _Capped(max_providers)
        self._gateway = _Capped(max_providers)
        self._series: dict[tuple[Any, Any, Any, Any], _Series] = {}
        self._errors: dict[tuple[str, str, str], Counter] = {}

    def _register_metrics(self, r: CollectorRegistry) -> None:
        call = ("gateway", "provider", "model")
        self.requests = Counter("switchpoint_requests", "Finished calls", (*call, "status_class"), registry=r)
        self.errors = Counter("switchpoint_errors", "Failed calls by kind", ("gateway", "provider", "kind"), registry=r)
        self.duration = Histogram(
            "switchpoint_request_duration_seconds", "Whole call, accept to last byte", ("gateway", "provider"),
            buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.first_byte = Histogram(
            "switchpoint_first_byte_seconds", "Accept to the first upstream byte", ("gateway", "provider"),
            buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.tokens = Counter("switchpoint_tokens", "Tokens by direction", (*call, "direction"), registry=r)
        self.cost = Counter("switchpoint_cost_usd", "Estimated or custom cost in USD", call, registry=r)
        self.cache_hits = Counter(
            "switchpoint_cache_hits", "Answers served from the gateway cache", ("gateway",), registry=r
        )
        self.limit_rejections = Counter(
            "switchpoint_limit_rejections", "Calls refused by a gateway limit", ("gateway", "kind"), registry=r
        )

    def set_log_counters(self, source: Callable[[], Mapping[str, int]] | None) -> None:
        """Attach (or detach) the log writer's `counters()` once it exists."""
        self.log_writer.source = source

    def observe(self, record: Mapping[str, Any]) -> None:
        """Count one finished call from its log record; cheap enough to run on every call."""
        get = record.get
        key = (get("gateway"), get("provider"), get("model"), get("status_code"))
        series = self._series.get(key) or self._bind(key)
        series.requests(1)
        duration = get("duration_ms")
        if duration is not None and duration >= 0:
            series.duration(duration / 1000)
        ttfb = get("ttfb_ms")
        if ttfb is not None and ttfb >= 0:
            series.ttfb(ttfb / 1000)
        tokens = series.tokens
        for index, field in _TOKEN_FIELDS:
            count = get(field)
            if count and count > 0:
                (tokens[index] or series.token_adder(index))(count)
        cost = get("cost")
        if cost and cost > 0:
            series.cost(cost)
        if get("cached"):
            series.cache_hits(1)
        if series.failed or get("error") is not None:
            self._count_error(series, record)

    def _bind(self, key: tuple[Any, Any, Any, Any]) -> _Series:
        if len(self._series) >= _SERIES_LIMIT:
            self._series.clear()
        gateway, provider, model, status = key
        series = _Series(self, self._gateway(gateway), self._provider(provider), self._model(model), status)
        self._series[key] = series
        return series

    def _count_error(self, series: _Series, record: Mapping[str, Any]) -> None:
        kind = error_kind(record)
        if kind is None:
            return
        error_key = (series.gateway, series.provider, kind)
        child = self._errors.get(error_key)
        if child is None:
            if len(self._errors) >= _SERIES_LIMIT:
                self._errors.clear()
            child = self._errors[error_key] = self.errors.labels(*error_key)
        child.inc()
        limit = LIMIT_KINDS.get(kind)
        if limit is not None:
            self.limit_rejections.labels(series.gateway, limit).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type, for a `/metrics` handler."""
        if self._multiproc is None:
            return generate_latest(self.registry), CONTENT_TYPE
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=self._multiproc)  # type: ignore[no-untyped-call]
        merged.register(self.log_writer)
        return generate_latest(merged), CONTENT_TYPE
