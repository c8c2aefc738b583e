"""Read side of the logs for the API, CLI and dashboard: time-bucketed analytics, and `SqlLogStore`.

Analytics count requests, errors, cache hits, tokens and cost per time bucket (and group), with p50/p95 of
total and first-byte latency. On PostgreSQL the percentiles are exact `percentile_cont`, one LATERAL
aggregate per bucket, slices of buckets on parallel connections; a single bucket grouped by a metadata key
(a heap scan of the whole range) has parallel workers scan it instead. SQLite has no percentile function, so
there they are computed here, in Python, with the same interpolation over each bucket's values (one small
row read per record in the range). Query parameters (Cloudflare's names) are parsed by `store.logquery`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Integer, RowMapping, Select, cast, func, literal, select, text, true
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from switchpoint.errors import BadRequest, GatewayError, NotFound
from switchpoint.store import logs as store
from switchpoint.store.db import is_db_down
from switchpoint.store.logquery import DELETE_CONTROLS, check_metadata_key, parse_log_query, parse_patch, parse_time

__all__ = ["AnalyticsQuery", "SqlLogStore", "StoreUnavailable", "analytics", "parse_analytics"]

c = store.c
Pairs = Sequence[tuple[str, str]]
NAMED_INTERVALS = {"minute": 60, "hour": 3600, "day": 86400, "week": 604800}
_AUTO_STEPS = (60, 300, 900, 3600, 21600, 86400, 604800)
_AUTO_TARGET = 300  # buckets the automatic interval aims to stay under
MAX_BUCKETS = 10000
DEFAULT_RANGE_S = 86400.0
GROUPS = ("provider", "model", "gateway")
_QUANTILES = (0.5, 0.95)
ANALYTICS_WORK_MEM = "64MB"
_SETTINGS = text("SELECT set_config('jit', 'off', true), set_config('work_mem', :work_mem, true)")
# One bucket grouped by a metadata key reads the whole range from the heap: let parallel workers scan it and
# extract the key (the grouping and percentiles stay in the leader; array_agg has no partial form before 16).
_PARALLEL_SCAN = text(
    "SELECT set_config('parallel_setup_cost', '0', true), set_config('parallel_tuple_cost', '0', true)"
)
ANALYTICS_FANOUT = 4  # bucket slices computed at once, each on its own connection (PostgreSQL)


class StoreUnavailable(GatewayError):
    """The log store cannot be reached (down, restarting, out of connections): try again shortly."""

    status = 503
    default_message = "The log store is unavailable; try again shortly"


@contextmanager
def _store_errors() -> Iterator[None]:
    """Database failures as API errors: unreachable is a 503, a refused query a 400 (with its first line)."""
    try:
        yield
    except (SQLAlchemyError, OSError) as exc:
        if isinstance(exc, OSError) or is_db_down(exc):
            raise StoreUnavailable() from exc
        raise BadRequest(f"the log store refused this query: {str(exc).splitlines()[0]}") from exc


@dataclass(frozen=True, slots=True)
class AnalyticsQuery:
    """Buckets of `interval_s` from `start` (inclusive) to `end` (exclusive), optionally per group."""

    gateway: str | None
    start: float
    end: float
    interval_s: int
    group_by: str | None = None  # provider, model, gateway or metadata.<key>
    conditions: tuple[store.Condition, ...] = ()


def _interval(raw: str | None, span: float) -> int:
    if raw is None or raw == "auto":
        return next((s for s in _AUTO_STEPS if span / s <= _AUTO_TARGET), _AUTO_STEPS[-1])
    if raw in NAMED_INTERVALS:
        return NAMED_INTERVALS[raw]
    try:
        seconds = int(raw)
    except ValueError:
        raise BadRequest(f"interval: '{raw}' is not minute, hour, day, week or a number of seconds") from None
    if seconds < 1:
        raise BadRequest("interval: must be at least 1 second")
    return seconds


def parse_analytics(gateway: str | None, pairs: Pairs, now: float | None = None) -> AnalyticsQuery:
    """`start_date`/`end_date` (default: the last 24 hours), `interval`, `group_by`, plus any list filter."""
    params = dict(pairs)
    now = time.time() if now is None else now
    end = parse_time("end_date", params["end_date"]) if "end_date" in params else now
    start = parse_time("start_date", params["start_date"]) if "start_date" in params else end - DEFAULT_RANGE_S
    if end <= start:
        raise BadRequest("start_date must be before end_date")
    interval = _interval(params.get("interval"), end - start)
    if (end - start) / interval > MAX_BUCKETS:
        raise BadRequest(f"interval: more than {MAX_BUCKETS} buckets; choose a longer interval")
    group_by = params.get("group_by") or None
    if group_by is not None and group_by.startswith(store.METADATA_PREFIX):
        check_metadata_key(group_by)
    elif group_by is not None and group_by not in GROUPS:
        raise BadRequest("group_by: one of provider, model, gateway or metadata.<key>")
    rest = [(k, v) for k, v in pairs if k not in {"start_date", "end_date", "interval", "group_by"}]
    filters = parse_log_query(gateway, rest, controls=frozenset())
    return AnalyticsQuery(gateway, start, end, interval, group_by, filters.conditions)


# -- the queries -----------------------------------------------------------------------------------------


def _bucket(q: AnalyticsQuery) -> ColumnElement[int]:
    """SQLite's bucket number; truncation is floor here since created_at >= start."""
    return cast((c.created_at - literal(q.start)) / literal(float(q.interval_s)), Integer)


def _group(conn: Connection, group_by: str | None) -> ColumnElement[Any]:
    if group_by is None:
        return literal(None)
    if group_by.startswith(store.METADATA_PREFIX):  # as text on PostgreSQL, as JSON text on SQLite
        key = group_by[len(store.METADATA_PREFIX) :]
        return store.metadata_value(conn, key, as_text=conn.dialect.name == "postgresql")
    return c[group_by]


def _label(conn: Connection, group_by: str | None, value: Any) -> Any:
    """Group values as text, the same on both backends (SQLite's metadata comes as JSON text)."""
    if value is None or group_by is None or not group_by.startswith(store.METADATA_PREFIX):
        return value
    if conn.dialect.name == "postgresql":
        return value
    decoded = orjson.loads(value)
    if isinstance(decoded, bool):
        return "true" if decoded else "false"
    return decoded if isinstance(decoded, str) else orjson.dumps(decoded).decode()


def _sqlite_base(conn: Connection, q: AnalyticsQuery, *cols: Any) -> Select[Any]:
    cond = store.where(conn, q.gateway, q.conditions)
    window = (c.created_at >= q.start) & (c.created_at < q.end)
    bucket, group = _bucket(q).label("bucket"), _group(conn, q.group_by).label("grp")
    return select(bucket, group, *cols).where(cond, window).group_by(bucket, group)


def bucket_count(q: AnalyticsQuery) -> int:
    """How many buckets the window holds (the last may be partial)."""
    return math.ceil((q.end - q.start) / q.interval_s)


def slices(count: int, parts: int) -> list[tuple[int, int]]:
    """[first, last] bucket ranges splitting `count` buckets into at most `parts` near-equal runs."""
    parts = max(1, min(parts, count))
    bounds = [count * i // parts for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(parts)]


def _pg_statement(conn: Connection, q: AnalyticsQuery, first: int, last: int) -> Select[Any]:
    """One LATERAL aggregate per bucket over generate_series: each is an index range scan (index-only on
    the covering gateway index) whose percentile sorts cover one bucket, instead of sorting the whole range
    by bucket first, which took about twice as long at 1M rows. A single bucket gets constant bounds, so
    the planner sees how many rows it reads (a sequential scan when that is most of the table)."""
    if first == last:
        bucket: Any = literal(first)
        low: Any = literal(q.start + first * q.interval_s)
        buckets: Any = None
    else:
        buckets = func.generate_series(first, last).table_valued("i").render_derived(name="b")
        bucket, low = buckets.c.i, literal(q.start) + buckets.c.i * literal(float(q.interval_s))
    high = low + literal(float(q.interval_s))
    group = _group(conn, q.group_by)
    cond = store.where(conn, q.gateway, q.conditions)
    window = (c.created_at >= low, c.created_at < high, c.created_at < q.end)
    if q.group_by is None:
        inner = select(literal(None).label("grp"), *_sums(), *_pg_percentiles()).where(cond, *window)
    else:  # hashed groups collecting their latencies: no sort of every row by group
        inner = select(group.label("grp"), *_sums(), *_pg_latencies()).where(cond, *window).group_by(group)
    per_bucket = inner.lateral("s") if buckets is not None else inner.subquery("s")
    joined: Any = per_bucket if buckets is None else buckets.join(per_bucket, true())
    cols: list[Any] = [bucket.label("bucket"), *(col for col in per_bucket.c if col.name not in ("d", "t"))]
    if q.group_by is not None:
        quantiles = _pg_array_percentiles(per_bucket)
        joined = joined.join(quantiles, true())
        cols += [quantiles.c.duration_q, quantiles.c.ttfb_q]
    order = [per_bucket.c.grp] if buckets is None else [bucket, per_bucket.c.grp]
    return select(*cols).select_from(joined).order_by(*order)


def _pg_latencies() -> list[Any]:
    return [
        func.array_agg(c.duration_ms).label("d"),
        func.array_agg(c.ttfb_ms).filter(c.ttfb_ms.is_not(None)).label("t"),  # NULL when there are none
    ]


def _pg_array_percentiles(per_bucket: Any) -> Any:
    """percentile_cont over a group's collected latencies (ttfb's NULLs left out, as over the rows themselves).
    Each array is unnested in a select list (ProjectSet) rather than FROM, which would first copy its values
    into a tuplestore: ~15% less for one bucket of 1M rows grouped by a metadata key."""
    fractions = array([literal(p) for p in _QUANTILES])

    def quantiles(values: Any, name: str) -> Any:
        u = select(func.unnest(values).label("x")).correlate(per_bucket).subquery("u")
        return select(func.percentile_cont(fractions).within_group(u.c.x)).scalar_subquery().label(name)

    return select(quantiles(per_bucket.c.d, "duration_q"), quantiles(per_bucket.c.t, "ttfb_q")).lateral("p")


def _sums() -> list[Any]:
    return [
        func.count().label("requests"),
        func.count().filter(~c.success).label("errors"),
        func.count().filter(c.cached).label("cached"),
        func.coalesce(func.sum(c.tokens_in), 0).label("tokens_in"),
        func.coalesce(func.sum(c.tokens_out), 0).label("tokens_out"),
        func.coalesce(func.sum(c.cost), 0.0).label("cost"),
    ]


def _pg_percentiles() -> list[Any]:
    fractions = array([literal(p) for p in _QUANTILES])
    return [
        func.percentile_cont(fractions).within_group(c.duration_ms).label("duration_q"),
        func.percentile_cont(fractions).within_group(c.ttfb_ms).label("ttfb_q"),
    ]


def percentile_cont(ordered: Sequence[float], fraction: float) -> float | None:
    """PostgreSQL's percentile_cont over already sorted values: linear interpolation between ranks."""
    if not ordered:
        return None
    rank = fraction * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _python_percentiles(conn: Connection, q: AnalyticsQuery) -> dict[tuple[int, Any], dict[str, list[float]]]:
    """Per (bucket, group): sorted duration and ttfb values, for SQLite's percentiles."""
    values: dict[tuple[int, Any], dict[str, list[float]]] = defaultdict(lambda: {"duration": [], "ttfb": []})
    stmt = _sqlite_base(conn, q, c.duration_ms, c.ttfb_ms).group_by(None)
    for bucket, group, duration, ttfb in conn.execute(stmt):
        entry = values[(bucket, group)]
        entry["duration"].append(duration)
        if ttfb is not None:
            entry["ttfb"].append(ttfb)
    for entry in values.values():
        entry["duration"].sort()
        entry["ttfb"].sort()
    return values


def _row(conn: Connection, q: AnalyticsQuery, row: RowMapping, quantiles: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "start": store.iso_time(q.start + row["bucket"] * q.interval_s),
        "group": _label(conn, q.group_by, row["grp"]),
    }
    out.update({k: row[k] for k in ("requests", "errors", "cached", "tokens_in", "tokens_out")})
    out["cost"] = float(row["cost"])
    out["cache_hit_ratio"] = row["cached"] / row["requests"] if row["requests"] else 0.0
    for name in ("duration", "ttfb"):
        for fraction, value in zip(_QUANTILES, quantiles[name], strict=True):
            out[f"{name}_p{round(fraction * 100)}"] = value
    return out


def pg_buckets(conn: Connection, q: AnalyticsQuery, first: int = 0, last: int | None = None) -> list[dict[str, Any]]:
    """Buckets `first`..`last` (default: all) on PostgreSQL, with exact percentile_cont."""
    # For this transaction: no JIT (compiling costs ~100 ms, gains nothing here) and enough work_mem for a
    # bucket's sorts to stay in memory.
    conn.execute(_SETTINGS, {"work_mem": ANALYTICS_WORK_MEM})
    last = bucket_count(q) - 1 if last is None else last
    if first == last and q.group_by is not None and q.group_by.startswith(store.METADATA_PREFIX):
        conn.execute(_PARALLEL_SCAN)
    buckets = []
    for row in conn.execute(_pg_statement(conn, q, first, last)):
        m = row._mapping
        if m["requests"]:
            none = [None] * len(_QUANTILES)
            buckets.append(_row(conn, q, m, {"duration": m["duration_q"] or none, "ttfb": m["ttfb_q"] or none}))
    return buckets


def _sqlite_buckets(conn: Connection, q: AnalyticsQuery) -> list[dict[str, Any]]:
    samples = _python_percentiles(conn, q)
    buckets = []
    for row in conn.execute(_sqlite_base(conn, q, *_sums()).order_by("bucket", "grp")):
        m = row._mapping
        values = samples[(m["bucket"], m["grp"])]
        buckets.append(_row(conn, q, m, {k: [percentile_cont(v, f) for f in _QUANTILES] for k, v in values.items()}))
    return buckets


def analytics(conn: Connection, q: AnalyticsQuery) -> dict[str, Any]:
    """Requests, errors, cache hits, tokens, cost and p50/p95 latency (total and first byte) per bucket."""
    return report(q, pg_buckets(conn, q) if conn.dialect.name == "postgresql" else _sqlite_buckets(conn, q))


def report(q: AnalyticsQuery, buckets: list[dict[str, Any]]) -> dict[str, Any]:
    """The analytics result: the window, the buckets (sparse: empty ones are left out) and their totals."""
    return {
        "start": store.iso_time(q.start),
        "end": store.iso_time(q.end),
        "interval": q.interval_s,
        "group_by": q.group_by,
        "buckets": buckets,
        "totals": _totals(buckets),
    }


def _totals(buckets: list[dict[str, Any]]) -> dict[str, Any]:
    totals: dict[str, Any] = {k: sum(b[k] for b in buckets) for k in ("requests", "errors", "cached", "tokens_in")}
    totals["tokens_out"] = sum(b["tokens_out"] for b in buckets)
    totals["cost"] = sum(b["cost"] for b in buckets)
    totals["cache_hit_ratio"] = totals["cached"] / totals["requests"] if totals["requests"] else 0.0
    return totals


# -- the server's LogStore -------------------------------------------------------------------------------


class SqlLogStore:
    """`surfaces.logs_api.LogStore` over the server's engine; raises BadRequest, NotFound and StoreUnavailable."""

    def __init__(self, engine: AsyncEngine, fanout: int = ANALYTICS_FANOUT) -> None:
        self._engine = engine
        self._fanout = fanout
        self._slots = asyncio.Semaphore(fanout)  # connections analytics may hold at once, across requests

    async def list_logs(self, gateway: str | None, params: Pairs) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """One page of records (API shape, no bodies) and its result_info."""
        q = parse_log_query(gateway, params)
        with _store_errors():
            async with self._engine.connect() as conn:
                page = await conn.run_sync(store.list_logs, q)
        return page.rows, page.info

    async def get_log(self, gateway: str | None, log_id: str) -> dict[str, Any]:
        """One record with its bodies decoded; NotFound when there is none."""
        with _store_errors():
            async with self._engine.connect() as conn:
                row = await conn.run_sync(store.get_log, gateway, log_id)
        if row is None:
            raise NotFound(f"No log '{log_id}' in gateway '{gateway or '*'}'")
        return row

    async def get_body(self, gateway: str | None, log_id: str, which: str) -> Any:
        """The `request` or `response` body decoded; NotFound without the record or when not collected."""
        with _store_errors():
            async with self._engine.connect() as conn:
                found, body = await conn.run_sync(store.get_body, gateway, log_id, which)
        if not found:
            raise NotFound(f"No log '{log_id}' in gateway '{gateway or '*'}'")
        if body is None:
            raise NotFound(f"The {which} body of log '{log_id}' was not collected")
        return body

    async def patch_log(self, gateway: str | None, log_id: str, body: Any) -> dict[str, Any]:
        """Apply `{feedback, score, metadata}` (validated) and return the updated record."""
        values = parse_patch(body)
        with _store_errors():
            async with self._engine.begin() as conn:
                row = await conn.run_sync(store.patch_log, gateway, log_id, values)
        if row is None:
            raise NotFound(f"No log '{log_id}' in gateway '{gateway or '*'}'")
        return row

    async def delete_logs(self, gateway: str | None, params: Pairs) -> int:
        """Delete what the filters match (at most `limit`), in batches; returns how many went."""
        q = parse_log_query(gateway, params, DELETE_CONTROLS)
        with _store_errors():
            return await store.adelete_logs(self._engine, q)

    async def analytics(self, gateway: str | None, params: Pairs) -> dict[str, Any]:
        """The analytics report; on PostgreSQL, bucket slices run on up to `fanout` connections at once."""
        q = parse_analytics(gateway, params)
        with _store_errors():
            if self._engine.dialect.name != "postgresql":
                async with self._engine.connect() as conn:
                    return await conn.run_sync(analytics, q)
            parts = slices(bucket_count(q), self._fanout)
            results = await asyncio.gather(*(self._slice(q, lo, hi) for lo, hi in parts))
        return report(q, [bucket for part in results for bucket in part])

    async def _slice(self, q: AnalyticsQuery, first: int, last: int) -> list[dict[str, Any]]:
        """PostgreSQL runs ordered-set aggregates on one core: slices of buckets on their own connections
        use the others (1M rows grouped by provider: ~600 ms on one connection, ~340 ms on two)."""
        async with self._slots, self._engine.connect() as conn:
            return await conn.run_sync(pg_buckets, q, first, last)
