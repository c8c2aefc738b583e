"""The logs API's queries on both backends: filters, ordering, cursor pages, get, patch, delete, export, retention.

Every test runs on SQLite and on PostgreSQL (`store_urls` is parametrized) and must give the same answers.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, insert, select

from switchpoint.errors import BadRequest
from switchpoint.store import db, retention
from switchpoint.store import logs as q
from switchpoint.store.logquery import DELETE_CONTROLS, parse_log_query, parse_patch
from switchpoint.store.logwriter import LogWriter
from switchpoint.store.tables import LOG_COLUMNS, logs
from tests.store.conftest import record
from tests.support.postgres import pg_database, store_urls

__all__ = ["pg_database", "store_urls"]

BASE = 1_750_000_000.0
Rec = dict[str, Any]


def sample(i: int) -> Rec:
    """Forty-odd distinct records: three share each timestamp, every tenth failed, some without metadata."""
    failed = i % 10 == 9
    return record(
        i,
        created_at=BASE + i // 3,
        gateway="prod" if i >= 36 else "default",
        provider=("openai", "anthropic", "groq")[i % 3],
        model=f"m-{i % 4}",
        status_code=502 if failed else 200,
        success=not failed,
        cached=i % 4 == 0,
        cost=None if failed else round(0.01 * i, 4),
        tokens_in=10 * i,
        tokens_out=None if failed else i,
        duration_ms=100.0 + i,
        ttfb_ms=None if i % 2 else 10.0 + i,
        event_id=record(i)["id"] if i % 7 == 0 else f"evt-{i // 2}",  # the default event id is the log id
        metadata={"user": f"u{i % 3}", "n": i % 2, "vip": i % 5 == 0, "note": f"Hello {i}"} if i % 8 else None,
        request_body=b'{"model":"m"}' if i % 6 else None,
        response_body=bytes([0xFF, i]) if i == 5 else b"plain text",
    )


RECORDS = [sample(i) for i in range(42)]


def full(r: Rec) -> Rec:
    return {name: r.get(name) for name in LOG_COLUMNS}


@pytest.fixture
def engine(store_urls: db.StoreUrls) -> Iterator[Engine]:
    eng = db.sync_engine(store_urls)
    with eng.begin() as conn:
        conn.execute(delete(logs))
        conn.execute(insert(logs), [full(r) for r in RECORDS])
    yield eng
    eng.dispose()


def run(engine: Engine, pairs: list[tuple[str, str]], gateway: str | None = None) -> q.LogPage:
    with engine.connect() as conn:
        return q.list_logs(conn, parse_log_query(gateway, pairs))


def ids(page: q.LogPage) -> list[str]:
    return [r["id"] for r in page.rows]


def newest_first(records: list[Rec]) -> list[str]:
    return [r["id"] for r in sorted(records, key=lambda r: (r["created_at"], r["id"]), reverse=True)]


def test_cursor_pages_walk_every_record_once_through_timestamp_ties(engine: Engine) -> None:
    for direction in ("desc", "asc"):
        seen: list[str] = []
        cursor: str | None = None
        while True:
            extra = [("cursor", cursor)] if cursor else []
            page = run(engine, [("per_page", "7"), ("order_by_direction", direction), *extra], "default")
            seen += ids(page)
            cursor = page.info["cursor"]
            if cursor is None:
                break
        expected = newest_first([r for r in RECORDS if r["gateway"] == "default"])
        assert seen == (expected if direction == "desc" else expected[::-1])


def test_pages_and_the_page_info(engine: Engine) -> None:
    second = run(engine, [("per_page", "5"), ("page", "2")])
    assert ids(second) == newest_first(RECORDS)[5:10]
    assert {k: second.info[k] for k in ("count", "page", "per_page")} == {"count": 5, "page": 2, "per_page": 5}
    third = run(engine, [("per_page", "5"), ("cursor", second.info["cursor"])])  # a page can go on by cursor
    assert ids(third) == newest_first(RECORDS)[10:15]
    assert run(engine, [("per_page", "100")]).info["cursor"] is None  # no more
    row = run(engine, [("id", RECORDS[5]["id"])]).rows[0]
    assert row["created_at"] == "2025-06-15T15:06:41.000Z" and row["duration"] == 105.0 and "request_body" not in row
    assert row["metadata"] == RECORDS[5]["metadata"]


def _m(key: str) -> Callable[[Rec], Any]:
    return lambda r: (r["metadata"] or {}).get(key)


FILTERS: list[tuple[list[tuple[str, str]], Callable[[Rec], bool]]] = [
    ([("provider", "openai")], lambda r: r["provider"] == "openai"),
    ([("provider", "openai"), ("provider", "groq")], lambda r: r["provider"] in ("openai", "groq")),
    ([("model", "m-1"), ("success", "false")], lambda r: r["model"] == "m-1" and not r["success"]),
    ([("status", "502")], lambda r: r["status_code"] == 502),
    ([("cached", "true")], lambda r: r["cached"]),
    ([("min_cost", "0.1"), ("max_cost", "0.2")], lambda r: r["cost"] is not None and 0.1 <= r["cost"] <= 0.2),
    ([("min_duration", "130")], lambda r: r["duration_ms"] >= 130),
    ([("max_total_tokens", "100")], lambda r: r["tokens_in"] + (r["tokens_out"] or 0) <= 100),
    ([("min_ttfb", "40")], lambda r: r["ttfb_ms"] is not None and r["ttfb_ms"] >= 40),
    ([("start_date", "2025-06-15T15:06:45Z"), ("end_date", str(BASE + 8))],
     lambda r: BASE + 5 <= r["created_at"] <= BASE + 8),
    ([("event_id", "evt-3")], lambda r: r["event_id"] == "evt-3"),
    ([("event_id", RECORDS[7]["id"]), ("event_id", "evt-4")], lambda r: r["event_id"] in (RECORDS[7]["id"], "evt-4")),
    ([("gateway", "prod")], lambda r: r["gateway"] == "prod"),
    ([("metadata.user", "u1")], lambda r: _m("user")(r) == "u1"),
    ([("metadata.n", "1")], lambda r: _m("n")(r) == 1),
    ([("metadata.vip", "true")], lambda r: _m("vip")(r) is True),
    ([("metadata.user", "u1"), ("metadata.user", "u2")], lambda r: _m("user")(r) in ("u1", "u2")),
    ([("filters", '[{"key":"metadata.user","operator":"neq","value":["u1"]}]')], lambda r: _m("user")(r) != "u1"),
    ([("filters", '[{"key":"metadata.note","operator":"contains","value":["LO 1"]}]')],
     lambda r: "lo 1" in str(_m("note")(r)).lower()),
    ([("filters", '[{"key":"provider","operator":"neq","value":["openai","groq"]}]')],
     lambda r: r["provider"] == "anthropic"),
    ([("filters", '[{"key":"model","operator":"contains","value":["M-3"]}]')], lambda r: r["model"] == "m-3"),
    ([("filters", '[{"key":"cost","operator":"gt","value":[0.3]},{"key":"tokens","operator":"lt","value":[400]}]')],
     lambda r: (r["cost"] or 0) > 0.3 and r["tokens_in"] + (r["tokens_out"] or 0) < 400),
    ([("filters", '{"key":"id","operator":"eq","value":"' + RECORDS[3]["id"] + '"}')],
     lambda r: r["id"] == RECORDS[3]["id"]),
]  # fmt: skip


@pytest.mark.parametrize(("pairs", "keep"), FILTERS, ids=[str(p) for p, _ in FILTERS])
def test_filters(engine: Engine, pairs: list[tuple[str, str]], keep: Callable[[Rec], bool]) -> None:
    expected = newest_first([r for r in RECORDS if keep(r)])
    assert expected, "a filter that matches nothing proves little"
    assert ids(run(engine, [*pairs, ("per_page", "1000")])) == expected


def test_order_by_a_column_puts_nulls_last(engine: Engine) -> None:
    for direction, reverse in (("asc", False), ("desc", True)):
        got = run(engine, [("order_by", "cost"), ("order_by_direction", direction), ("per_page", "1000")])
        costs = [r["cost"] for r in got.rows]
        priced = [c for c in costs if c is not None]
        assert priced == sorted(priced, reverse=reverse) and costs[len(priced) :] == [None] * (len(costs) - len(priced))


def test_meta_info_aggregates(engine: Engine) -> None:
    info = run(engine, [("meta_info", "true"), ("provider", "openai")]).info
    mine = [r for r in RECORDS if r["provider"] == "openai"]
    costs = [r["cost"] for r in mine if r["cost"] is not None]
    assert info["total_count"] == len(mine)
    assert (info["min_cost"], info["max_cost"]) == (min(costs), max(costs))
    assert info["max_total_tokens"] == max(r["tokens_in"] + (r["tokens_out"] or 0) for r in mine)


def test_get_one_with_bodies(engine: Engine) -> None:
    with engine.connect() as conn:
        json_body = q.get_log(conn, "default", RECORDS[1]["id"])
        binary = q.get_log(conn, None, RECORDS[5]["id"])
        assert q.get_log(conn, "prod", RECORDS[1]["id"]) is None and q.get_log(conn, None, "nope") is None
        assert q.get_body(conn, None, RECORDS[0]["id"], "request") == (True, None)  # not collected
        assert q.get_body(conn, None, RECORDS[1]["id"], "response") == (True, "plain text")
        assert q.get_body(conn, None, "nope", "request") == (False, None)
    assert json_body is not None and binary is not None
    assert json_body["request_body"] == {"model": "m"} and json_body["response_body"] == "plain text"
    assert binary["response_body"] == {"$b64": "/wU="}


def test_patch_feedback_score_metadata(engine: Engine) -> None:
    log_id = RECORDS[2]["id"]
    with engine.begin() as conn:
        row = q.patch_log(conn, "default", log_id, parse_patch({"feedback": -1, "score": 75, "metadata": {"k": 1}}))
        assert q.patch_log(conn, "prod", log_id, {"feedback": 1}) is None
    assert row is not None and (row["feedback"], row["score"], row["metadata"]) == (-1, 75.0, {"k": 1})
    assert ids(run(engine, [("feedback", "0")])) == [log_id]  # Cloudflare's feedback=0: thumbs down
    with engine.begin() as conn:
        cleared = q.patch_log(conn, None, log_id, parse_patch({"feedback": 0, "metadata": None}))
    assert cleared is not None and (cleared["feedback"], cleared["metadata"]) == (None, None)


@pytest.mark.parametrize(
    "body",
    [{}, [], {"feedback": 2}, {"feedback": True}, {"score": 101}, {"score": "5"}, {"metadata": {"a": [1]}},
     {"metadata": {str(i): i for i in range(6)}}, {"other": 1}],
)  # fmt: skip
def test_bad_patches_are_refused(body: Any) -> None:
    with pytest.raises(BadRequest):
        parse_patch(body)


def test_delete_by_filter_with_a_limit_oldest_first(engine: Engine) -> None:
    failed = [r for r in RECORDS if not r["success"]]
    pairs = [("success", "false"), ("limit", "2"), ("order_by_direction", "asc")]
    assert q.delete_logs(engine, parse_log_query(None, pairs, DELETE_CONTROLS)) == 2
    left = ids(run(engine, [("success", "false")]))
    assert left == newest_first(failed)[:-2]
    assert q.delete_logs(engine, parse_log_query("prod", [], DELETE_CONTROLS)) == 6
    assert len(ids(run(engine, [("per_page", "1000")]))) == len(RECORDS) - 8


def test_export_reads_every_record_in_pages(engine: Engine) -> None:
    many = [record(1000 + i, created_at=BASE + 100 + i / 7, gateway="bulk") for i in range(2345)]
    with engine.begin() as conn:
        conn.execute(insert(logs), [full(r) for r in many])
    out = list(q.export_logs(engine, parse_log_query("bulk", [("order_by_direction", "asc")]), bodies=True))
    assert [r["id"] for r in out] == newest_first(many)[::-1]
    assert out[0]["response_body"] == {"$b64": base64.b64encode(bytes(range(256))).decode()}


@pytest.mark.parametrize(
    "pairs",
    [[("colour", "red")], [("filters", "not json")], [("filters", '[{"key":"x","operator":"eq","value":[1]}]')],
     [("filters", '[{"key":"cost","operator":"like","value":[1]}]')],
     [("filters", '[{"key":"cost","operator":"contains","value":[1]}]')],
     [("filters", '[{"key":"success","operator":"lt","value":[1]}]')], [("min_cost", "cheap")],
     [("success", "maybe")], [("start_date", "yesterday")], [("per_page", "0")], [("per_page", "5000")],
     [("order_by", "colour")], [("cursor", "abc"), ("order_by", "cost")], [("min_tokens_in", str(2**40))],
     [("metadata.a\"b", "x")]],
)  # fmt: skip
def test_bad_queries_are_refused(pairs: list[tuple[str, str]]) -> None:
    with pytest.raises(BadRequest):
        parse_log_query(None, pairs)


def test_a_cursor_that_is_not_ours_is_refused(engine: Engine) -> None:
    with pytest.raises(BadRequest, match="cursor"):
        run(engine, [("cursor", "bm90IGEgY3Vyc29y")])


async def test_retention_deletes_by_age_then_down_to_the_cap(store_urls: db.StoreUrls, engine: Engine) -> None:
    aengine = db.async_engine(store_urls)
    try:
        by_age = retention.RetentionKeeper(aengine, retention.LogRetention(max_age_s=10), clock=lambda: BASE + 20)
        assert await by_age.enforce() == sum(1 for r in RECORDS if r["created_at"] < BASE + 10)
        keeper = retention.RetentionKeeper(aengine, retention.LogRetention(max_records=5))
        assert await keeper.enforce() == 12 - 5 and keeper.count == 5
    finally:
        await aengine.dispose()
    with engine.connect() as conn:
        left = conn.scalars(select(logs.c.id).order_by(logs.c.created_at.desc(), logs.c.id.desc())).all()
    assert left == newest_first(RECORDS)[:5]


async def test_stop_inserting_drops_loudly_at_the_cap(
    store_urls: db.StoreUrls, engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    aengine = db.async_engine(store_urls)
    policy = retention.LogRetention(max_records=len(RECORDS) + 3, strategy="stop_inserting")
    keeper = retention.RetentionKeeper(aengine, policy)
    try:
        assert await keeper.enforce() == 0 and keeper.admit(10) == 3
        writer = LogWriter(aengine, tmp_path / "spool.ndjson", flush_interval=0.01, capacity=keeper)
        await writer.start()
        for i in range(10):
            writer.submit(record(500 + i))
        with caplog.at_level(logging.ERROR, "switchpoint.logs"):
            await writer.close()
    finally:
        await aengine.dispose()
    assert (writer.counters["written"], writer.counters["dropped"]) == (3, 7) and keeper.count == len(RECORDS) + 3
    assert "log store is full" in caplog.text and "dropped 7 record(s)" in caplog.text
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(logs)) == len(RECORDS) + 3
