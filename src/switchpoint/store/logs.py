"""The logs API's queries over `logs`: typed filters compiled to SQL, cursor pages, get, patch, export, delete.

Each query is written once against a sync `Connection`: the CLI calls it directly, the server through
`AsyncConnection.run_sync`. Filters mean the same on SQLite and PostgreSQL (metadata: `->` there, jsonb
containment served by a GIN index here). `logquery` parses the API's vocabulary into a `LogQuery`;
`retention` deletes by age and count with `adelete_logs`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from sqlalchemy import (
    Connection,
    Engine,
    String,
    and_,
    cast,
    delete,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from switchpoint.errors import BadRequest
from switchpoint.store.tables import BINARY_LOG_COLUMNS, LOG_COLUMNS, logs

c = logs.c
Kind = Literal["str", "int", "float", "bool", "time"]
Op = Literal["eq", "neq", "contains", "lt", "gt", "le", "ge"]
_TOTAL_TOKENS = func.coalesce(c.tokens_in, 0) + func.coalesce(c.tokens_out, 0)
# Filterable fields by API name: (SQL expression, value kind).
FIELDS: dict[str, tuple[ColumnElement[Any], Kind]] = {
    **{n: (c[n], "str") for n in ("id", "gateway", "provider", "model", "path", "method", "surface")},
    **{n: (c[n], "str") for n in ("event_id", "user_agent", "error")},
    **{n: (c[n], "int") for n in ("status_code", "tokens_in", "tokens_out", "feedback", "attempts")},
    **{n: (c[n], "bool") for n in ("success", "cached", "stream", "custom_cost")},
    "created_at": (c.created_at, "time"),
    "cost": (c.cost, "float"),
    "score": (c.score, "float"),
    "duration": (c.duration_ms, "float"),
    "ttfb": (c.ttfb_ms, "float"),
    "tokens": (_TOTAL_TOKENS, "int"),
}
ORDERABLE = ("created_at", "provider", "model", "success", "cached", "cost", "duration", "ttfb", "status_code")
METADATA_PREFIX = "metadata."
_SUMMARY = [c[n] for n in LOG_COLUMNS if n not in BINARY_LOG_COLUMNS]
_RENAMED = {"duration_ms": "duration", "ttfb_ms": "ttfb"}
DELETE_BATCH = 5000


@dataclass(frozen=True, slots=True)
class Condition:
    """`field op values`: eq/neq match any of the values, the others take one; fields are FIELDS or metadata.K."""

    field: str
    op: Op
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class LogQuery:
    """What to list, export or delete; `gateway` None means every gateway."""

    gateway: str | None
    conditions: tuple[Condition, ...] = ()
    order_by: str = "created_at"
    descending: bool = True
    per_page: int = 20
    page: int = 1
    cursor: str | None = None  # from a previous page's result_info; only with order_by created_at
    meta_info: bool = False  # add total_count and min/max aggregates (a second, full-range query)
    limit: int | None = None  # delete at most this many


@dataclass(slots=True)
class LogPage:
    """Records in the API's shape and the page's result_info (count, page, per_page, cursor, aggregates)."""

    rows: list[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)


# -- compiling filters ----------------------------------------------------------------------------------


def metadata_candidates(value: str) -> list[str]:
    """The JSON texts a metadata value given as text may be stored as: the string, or the number/bool it spells."""
    texts = [orjson.dumps(value).decode()]
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return texts
    if isinstance(parsed, bool | int | float):
        texts.append(orjson.dumps(parsed).decode())
    return texts


def metadata_value(conn: Connection, key: str, as_text: bool) -> ColumnElement[Any]:
    """`metadata[key]`: as text (`->>`), or as JSON text on SQLite / a jsonb value on PostgreSQL (`->`)."""
    arrow = "->>" if as_text else "->"
    if conn.dialect.name == "postgresql":
        return c.metadata.op(arrow, return_type=JSONB if not as_text else String)(literal(key))
    return c.metadata.op(arrow, return_type=String)(literal('$."' + key + '"'))


def _metadata_eq(conn: Connection, key: str, values: Sequence[str]) -> ColumnElement[bool]:
    texts = [t for v in values for t in metadata_candidates(v)]
    if conn.dialect.name == "postgresql":  # jsonb containment: the GIN index answers it
        docs = ["{" + orjson.dumps(key).decode() + ":" + t + "}" for t in texts]
        return or_(*(c.metadata.op("@>", is_comparison=True)(cast(literal(d), JSONB)) for d in docs))
    return metadata_value(conn, key, as_text=False).in_(texts)


def _metadata(conn: Connection, cond: Condition) -> ColumnElement[bool]:
    key = cond.field[len(METADATA_PREFIX) :]
    if cond.op == "contains":
        text = metadata_value(conn, key, as_text=True)
        return or_(*(text.icontains(v, autoescape=True) for v in cond.values))
    eq = _metadata_eq(conn, key, cond.values)
    return eq if cond.op == "eq" else not_(func.coalesce(eq, false()))


def _event_id(values: Sequence[Any]) -> ColumnElement[bool]:
    """`event_id IN values` as SQLite's partial index (ids a client chose) and the primary key serve it."""
    chosen = and_(c.event_id.in_(values), c.event_id != c.id)
    return or_(chosen, and_(c.id.in_(values), c.event_id == c.id))


def _condition(conn: Connection, cond: Condition) -> ColumnElement[bool]:
    if cond.field.startswith(METADATA_PREFIX):
        return _metadata(conn, cond)
    col, _kind = FIELDS[cond.field]
    values = cond.values
    if cond.field == "event_id" and cond.op == "eq" and conn.dialect.name == "sqlite":
        return _event_id(values)
    if cond.op == "eq":
        return col.in_(values) if len(values) > 1 else col == values[0]
    if cond.op == "neq":
        return or_(col.not_in(values), col.is_(None))
    if cond.op == "contains":
        return or_(*(col.icontains(v, autoescape=True) for v in values))
    compare: dict[str, Callable[[Any], ColumnElement[bool]]] = {
        "lt": col.__lt__, "gt": col.__gt__, "le": col.__le__, "ge": col.__ge__,
    }  # fmt: skip
    return compare[cond.op](values[0])


def where(conn: Connection, gateway: str | None, conditions: Sequence[Condition]) -> ColumnElement[bool]:
    """The WHERE clause for a gateway (None: all) and conditions, all of which must hold."""
    parts = [_condition(conn, cond) for cond in conditions]
    if gateway is not None:
        parts.insert(0, c.gateway == gateway)
    return and_(true(), *parts)


# -- cursors and rows -----------------------------------------------------------------------------------


def encode_cursor(created_at: float, log_id: str) -> str:
    """An opaque cursor: the (created_at, id) of the last record shown, exact (JSON floats round-trip)."""
    return base64.urlsafe_b64encode(orjson.dumps([created_at, log_id])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Invert `encode_cursor`; anything else is a BadRequest."""
    try:
        created_at, log_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return float(created_at), str(log_id)
    except (ValueError, TypeError, binascii.Error):
        raise BadRequest("cursor: not a cursor this API returned") from None


def _after_cursor(cursor: str, descending: bool) -> ColumnElement[bool]:
    ts, log_id = decode_cursor(cursor)
    if descending:  # the redundant bound keeps it an index range scan
        return and_(c.created_at <= ts, or_(c.created_at < ts, and_(c.created_at == ts, c.id < log_id)))
    return and_(c.created_at >= ts, or_(c.created_at > ts, and_(c.created_at == ts, c.id > log_id)))


def iso_time(ts: float) -> str:
    """Epoch seconds as ISO-8601 UTC with milliseconds, `2025-06-15T15:06:40.000Z`."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decode_body(body: bytes) -> Any:
    """A stored body as a JSON value: parsed JSON, else UTF-8 text, else `{"$b64": ...}`."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return body.decode()
    except UnicodeDecodeError:
        return {"$b64": base64.b64encode(body).decode()}


def public_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A record in the API's shape: ISO `created_at`, Cloudflare's `duration`, bodies decoded when present."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        key = str(name)
        if key in BINARY_LOG_COLUMNS:
            value = None if value is None else decode_body(bytes(value))
        out[_RENAMED.get(key, key)] = value
    out["created_at"] = iso_time(row["created_at"])
    return out


# -- list, get, patch -----------------------------------------------------------------------------------


def _ordering(q: LogQuery) -> list[Any]:
    """The sort keys; NULLS LAST only on nullable columns, so (gateway, created_at) still serves the order."""
    col = FIELDS[q.order_by][0]
    first = col.desc() if q.descending else col.asc()
    keys = (
        [first]
        if q.order_by == "created_at"
        else [first.nulls_last(), c.created_at.desc() if q.descending else c.created_at.asc()]
    )
    return [*keys, c.id.desc() if q.descending else c.id.asc()]


def list_logs(conn: Connection, q: LogQuery, bodies: bool = False) -> LogPage:
    """One page, newest first by default; `info.cursor` continues it (created_at order only)."""
    cond = where(conn, q.gateway, q.conditions)
    stmt = select(*(logs.columns if bodies else _SUMMARY)).where(cond).order_by(*_ordering(q))
    if q.cursor is not None:
        stmt = stmt.where(_after_cursor(q.cursor, q.descending))
    elif q.page > 1:
        stmt = stmt.offset((q.page - 1) * q.per_page)
    rows = [dict(r._mapping) for r in conn.execute(stmt.limit(q.per_page + 1))]
    more = len(rows) > q.per_page
    rows = rows[: q.per_page]
    next_cursor = None
    if more and q.order_by == "created_at":
        next_cursor = encode_cursor(rows[-1]["created_at"], rows[-1]["id"])
    info: dict[str, Any] = {"count": len(rows), "page": q.page, "per_page": q.per_page, "cursor": next_cursor}
    if q.meta_info:
        info.update(_aggregates(conn, cond))
    return LogPage([public_row(r) for r in rows], info)


def _aggregates(conn: Connection, cond: ColumnElement[bool]) -> dict[str, Any]:
    measures: dict[str, ColumnElement[Any]] = {
        "cost": c.cost,
        "duration": c.duration_ms,
        "tokens_in": c.tokens_in,
        "tokens_out": c.tokens_out,
    }
    measures["total_tokens"] = _TOTAL_TOKENS
    cols = [func.count().label("total_count")]
    for name, col in measures.items():
        cols += [func.min(col).label(f"min_{name}"), func.max(col).label(f"max_{name}")]
    return dict(conn.execute(select(*cols).where(cond)).one()._mapping)


def _one(gateway: str | None, log_id: str) -> ColumnElement[bool]:
    return and_(c.id == log_id, true() if gateway is None else c.gateway == gateway)


def get_log(conn: Connection, gateway: str | None, log_id: str) -> dict[str, Any] | None:
    """One record with its bodies decoded (null where payload collection was off)."""
    row = conn.execute(select(logs).where(_one(gateway, log_id))).first()
    return None if row is None else public_row(dict(row._mapping))


def get_body(conn: Connection, gateway: str | None, log_id: str, which: str) -> tuple[bool, Any]:
    """(found, decoded body or None when not collected) for `which` in request/response."""
    row = conn.execute(select(c[f"{which}_body"]).where(_one(gateway, log_id))).first()
    if row is None:
        return False, None
    return True, None if row[0] is None else decode_body(bytes(row[0]))


def patch_log(conn: Connection, gateway: str | None, log_id: str, values: Mapping[str, Any]) -> dict[str, Any] | None:
    """Set feedback/score/metadata (already validated) on one record; None when there is no such record."""
    if values and conn.execute(update(logs).where(_one(gateway, log_id)).values(**values)).rowcount == 0:
        return None
    return get_log(conn, gateway, log_id)


def export_logs(engine: Engine, q: LogQuery, bodies: bool = False) -> Iterator[dict[str, Any]]:
    """Every matching record in created_at order, read page by page (constant memory at any size)."""
    cursor = q.cursor
    while True:
        page = LogQuery(q.gateway, q.conditions, "created_at", q.descending, per_page=1000, cursor=cursor)
        with engine.connect() as conn:
            result = list_logs(conn, page, bodies)
        yield from result.rows
        cursor = result.info["cursor"]
        if cursor is None:
            return


# -- delete and retention -------------------------------------------------------------------------------


def _through(last: tuple[float, str]) -> ColumnElement[bool]:
    """Records up to and including `last` in (created_at, id) order."""
    ts, log_id = last
    return and_(c.created_at <= ts, or_(c.created_at < ts, c.id <= log_id))


def delete_batch(conn: Connection, q: LogQuery, batch: int, through: tuple[float, str] | None = None) -> int:
    """Delete up to `batch` matching records in `q`'s order; callers loop, one transaction per batch."""
    cond = where(conn, q.gateway, q.conditions)
    if through is not None:
        cond = and_(cond, _through(through))
    ids = select(c.id).where(cond).order_by(*_ordering(q)).limit(batch)
    return int(conn.execute(delete(logs).where(c.id.in_(ids.scalar_subquery()))).rowcount or 0)


def _step(q: LogQuery, deleted: int) -> int:
    return DELETE_BATCH if q.limit is None else min(DELETE_BATCH, q.limit - deleted)


def delete_logs(engine: Engine, q: LogQuery) -> int:
    """Delete every matching record (at most `q.limit`), in batches so no transaction holds locks for long."""
    deleted = 0
    while (step := _step(q, deleted)) > 0:
        with engine.begin() as conn:
            n = delete_batch(conn, q, step)
        deleted += n
        if n < step:
            break
    return deleted


async def adelete_logs(engine: AsyncEngine, q: LogQuery, through: tuple[float, str] | None = None) -> int:
    """`delete_logs` for the server; `through` also bounds the records by (created_at, id)."""
    deleted = 0
    while (step := _step(q, deleted)) > 0:
        async with engine.begin() as conn:
            n = await conn.run_sync(delete_batch, q, step, through)
        deleted += n
        if n < step:
            break
    return deleted
