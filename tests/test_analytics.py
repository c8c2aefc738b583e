"""Analytics on both backends: bucket sums and p50/p95 latencies equal a plain Python computation, groups are
labelled the same on SQLite and PostgreSQL, parameters parse strictly, and slices on PostgreSQL add up."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, insert

from switchpoint import analytics
from switchpoint.errors import BadRequest
from switchpoint.store import db
from switchpoint.store.tables import LOG_COLUMNS, logs
from tests.store.conftest import record
from tests.support.postgres import free_port, pg_database, pg_url, store_urls

__all__ = ["pg_database", "store_urls"]

START = 1_760_000_000.0
HOUR = 3600


def sample(i: int) -> dict[str, Any]:
    """Three hours of calls (none in the second), three providers, one in six failed, one in four cached."""
    hour = (0, 2, 3)[i % 3]
    return record(
        i,
        created_at=START + hour * HOUR + (i * 37) % HOUR,
        gateway="g2" if i % 11 == 0 else "default",
        provider=("openai", "anthropic")[i % 2] if i % 5 else "groq",
        success=i % 6 != 0,
        cached=i % 4 == 0,
        tokens_in=i,
        tokens_out=None if i % 6 == 0 else 2 * i,
        cost=None if i % 6 == 0 else i / 1000,
        duration_ms=float((i * 7919) % 997),
        ttfb_ms=float((i * 104729) % 113) if i % 2 else None,
        metadata={"user": f"u{i % 2}", "vip": i % 3 == 0, "tier": i % 2} if i % 10 else None,
    )


OUTSIDE = [record(900, created_at=START - 1), record(901, created_at=START + 4 * HOUR)]  # before and after the window
RECORDS = [sample(i) for i in range(300)] + OUTSIDE


@pytest.fixture
def engine(store_urls: db.StoreUrls) -> Iterator[Engine]:
    eng = db.sync_engine(store_urls)
    with eng.begin() as conn:
        conn.execute(delete(logs))
        conn.execute(insert(logs), [{name: r.get(name) for name in LOG_COLUMNS} for r in RECORDS])
    yield eng
    eng.dispose()


def window(**extra: str) -> list[tuple[str, str]]:
    return [("start_date", str(START)), ("end_date", str(START + 4 * HOUR)), ("interval", "hour"), *extra.items()]


def query(engine: Engine, gateway: str | None, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    with engine.connect() as conn:
        return analytics.analytics(conn, analytics.parse_analytics(gateway, pairs))


def quantiles(values: list[float]) -> list[float | None]:
    if not values:
        return [None, None]
    if len(values) == 1:
        return [values[0], values[0]]
    cuts = statistics.quantiles(values, n=100, method="inclusive")  # percentile_cont's interpolation
    return [cuts[49], cuts[94]]


def expected(records: list[dict[str, Any]], group: Any, interval: int = HOUR) -> dict[tuple[str, Any], dict[str, Any]]:
    by_key: dict[tuple[str, Any], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        bucket = int((r["created_at"] - START) // interval)
        by_key[(analytics.store.iso_time(START + bucket * interval), group(r))].append(r)
    out = {}
    for key, rs in by_key.items():
        d50, d95 = quantiles(sorted(r["duration_ms"] for r in rs))
        t50, t95 = quantiles(sorted(r["ttfb_ms"] for r in rs if r["ttfb_ms"] is not None))
        out[key] = {
            "requests": len(rs), "errors": sum(not r["success"] for r in rs), "cached": sum(r["cached"] for r in rs),
            "tokens_in": sum(r["tokens_in"] for r in rs), "tokens_out": sum(r["tokens_out"] or 0 for r in rs),
            "cost": sum(r["cost"] or 0 for r in rs), "duration_p50": d50, "duration_p95": d95,
            "ttfb_p50": t50, "ttfb_p95": t95,
        }  # fmt: skip
    return out


def assert_buckets(result: dict[str, Any], want: dict[tuple[str, Any], dict[str, Any]]) -> None:
    got = {(b["start"], b["group"]): b for b in result["buckets"]}
    assert set(got) == set(want)
    for key, values in want.items():
        for name, value in values.items():
            assert got[key][name] == pytest.approx(value), (key, name)
        assert got[key]["cache_hit_ratio"] == pytest.approx(values["cached"] / values["requests"])


def test_buckets_by_provider_match_python(engine: Engine) -> None:
    result = query(engine, "default", window(group_by="provider"))
    mine = [r for r in RECORDS[:300] if r["gateway"] == "default"]
    assert_buckets(result, expected(mine, lambda r: r["provider"]))
    starts = sorted({b["start"] for b in result["buckets"]})  # sparse: hour 1 has no calls
    assert starts == [analytics.store.iso_time(START + h * HOUR) for h in (0, 2, 3)]
    assert result["totals"]["requests"] == len(mine) and result["interval"] == HOUR


def test_every_gateway_without_groups_and_with_a_filter(engine: Engine) -> None:
    result = query(engine, None, window(success="true"))
    assert_buckets(result, expected([r for r in RECORDS[:300] if r["success"]], lambda r: None))
    assert result["totals"]["errors"] == 0


@pytest.mark.parametrize(
    ("group_by", "label"),
    [("metadata.user", lambda m: m["user"]), ("metadata.vip", lambda m: "true" if m["vip"] else "false"),
     ("metadata.tier", lambda m: str(m["tier"])), ("gateway", None)],
)  # fmt: skip
def test_group_labels_are_the_same_text_on_both_backends(engine: Engine, group_by: str, label: Any) -> None:
    result = query(engine, None, window(group_by=group_by))
    if label is None:
        assert_buckets(result, expected(RECORDS[:300], lambda r: r["gateway"]))
    else:
        assert_buckets(result, expected(RECORDS[:300], lambda r: label(r["metadata"]) if r["metadata"] else None))


@pytest.mark.parametrize("group_by", [None, "provider", "metadata.user"])
def test_a_single_bucket_matches_python(engine: Engine, group_by: str | None) -> None:
    """One bucket is queried with constant bounds on PostgreSQL (the planner then sees the rows it reads)."""
    pairs = window(interval=str(4 * HOUR), **({"group_by": group_by} if group_by else {}))
    groups = {None: lambda r: None, "provider": lambda r: r["provider"]}
    group = groups.get(group_by, lambda r: r["metadata"]["user"] if r["metadata"] else None)
    assert_buckets(query(engine, None, pairs), expected(RECORDS[:300], group, interval=4 * HOUR))


def test_parameters() -> None:
    q = analytics.parse_analytics("g", [], now=START)
    assert (q.end - q.start, q.interval_s, q.group_by) == (86400, 300, None)
    week = analytics.parse_analytics(None, [("start_date", "2025-01-01"), ("end_date", "2025-01-08T00:00:00Z")])
    assert week.interval_s == 3600 and week.start == 1735689600.0
    assert analytics.parse_analytics(None, [("interval", "day"), ("provider", "x")], now=START).conditions
    for bad in ([("interval", "fortnight")], [("interval", "0")], [("group_by", "colour")],
                [("start_date", str(START + 10)), ("end_date", str(START))], [("interval", "1")],
                [("order_by", "cost")]):  # fmt: skip
        with pytest.raises(BadRequest):
            analytics.parse_analytics(None, bad, now=START)


def test_percentile_cont_and_slices() -> None:
    assert analytics.percentile_cont([], 0.5) is None
    assert analytics.percentile_cont([3.0], 0.95) == 3.0
    assert analytics.percentile_cont([1.0, 2.0, 3.0, 10.0], 0.5) == 2.5
    assert analytics.slices(10, 4) == [(0, 1), (2, 4), (5, 6), (7, 9)]
    assert analytics.slices(2, 4) == [(0, 0), (1, 1)]


async def test_the_store_slices_buckets_and_gives_the_same_answer(store_urls: db.StoreUrls, engine: Engine) -> None:
    aengine = db.async_engine(store_urls)
    try:
        pairs = window(group_by="model", interval="1200")
        one = await analytics.SqlLogStore(aengine, fanout=1).analytics("default", pairs)
        many = await analytics.SqlLogStore(aengine, fanout=3).analytics("default", pairs)
    finally:
        await aengine.dispose()
    assert one == many and len(one["buckets"]) > 3
    assert one == query(engine, "default", pairs)


async def test_slices_of_one_bucket_give_the_same_answer(store_urls: db.StoreUrls, engine: Engine) -> None:
    aengine = db.async_engine(store_urls)
    try:
        pairs = window(group_by="metadata.user")
        one = await analytics.SqlLogStore(aengine, fanout=1).analytics(None, pairs)
        each = await analytics.SqlLogStore(aengine, fanout=4).analytics(None, pairs)  # 4 buckets: one per slice
    finally:
        await aengine.dispose()
    assert one == each and one == query(engine, None, pairs)
    assert_buckets(one, expected(RECORDS[:300], lambda r: r["metadata"]["user"] if r["metadata"] else None))


async def test_an_unreachable_store_is_a_503(tmp_path: Path) -> None:
    aengine = db.async_engine(db.StoreUrls.resolve(pg_url("nowhere", free_port()), tmp_path))
    try:
        with pytest.raises(analytics.StoreUnavailable) as exc:
            await analytics.SqlLogStore(aengine).analytics(None, [])
        assert exc.value.status == 503
    finally:
        await aengine.dispose()
