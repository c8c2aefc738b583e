"""How a batch of log records reaches the driver: the cheapest statement each backend offers for it.

SQLite takes multi-row INSERTs of up to 64 rows (one statement step each, so the thread running them
releases and retakes the GIL once per slice instead of once per row), run by `sqlite_batches` on its own
connection, or here through SQLAlchemy for an in-memory database; PostgreSQL takes a binary COPY. Both skip
ids already stored (`ON CONFLICT (id) DO NOTHING`; COPY falls back to that INSERT when it fails), so a batch
replayed after a doubt (cancelled mid-commit, spooled, replayed) is never duplicated and never fails for it.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from switchpoint.store.spool import Record, row
from switchpoint.store.tables import LOG_COLUMNS, logs

_WIDTH = len(LOG_COLUMNS)
_METADATA = LOG_COLUMNS.index("metadata")
_CUSTOM_COST = LOG_COLUMNS.index("custom_cost")
# Rows per statement: SQLite's thread holds the GIL while it binds them and the core while it stores them,
# and asyncpg encodes a COPY on the loop, so a call arriving meanwhile waits for one slice, not the batch.
# (SQLite binds at most 32766 parameters in one statement, 999 before 3.32.)
_SLICE_ROWS = 64
SQLITE_SLICE_ROWS = min(_SLICE_ROWS, (32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999) // _WIDTH)
_NAMES = ", ".join(LOG_COLUMNS)
_SKIP_STORED = " ON CONFLICT (id) DO NOTHING"
_PG_INSERT = f"INSERT INTO logs ({_NAMES}) VALUES ({', '.join(f'${i}' for i in range(1, _WIDTH + 1))}){_SKIP_STORED}"


def driver_values(records: Sequence[Record]) -> list[Any]:
    """The records' values in LOG_COLUMNS order as the drivers take them (metadata as JSON text, a missing
    custom_cost False), laid end to end in one flat list (a multi-row INSERT's parameters) and fixed up by
    stride, which costs about a quarter less than a list per row (measured)."""
    params: list[Any] = []
    extend = params.extend
    for record in records:
        extend(map(record.get, LOG_COLUMNS))
    for i in range(_METADATA, len(params), _WIDTH):
        if (metadata := params[i]) is not None:
            params[i] = orjson.dumps(metadata).decode()
    for i in range(_CUSTOM_COST, len(params), _WIDTH):
        if params[i] is None:
            params[i] = False
    return params


@functools.lru_cache(maxsize=32)
def sqlite_insert(count: int) -> str:
    one = "(" + ", ".join("?" * _WIDTH) + ")"
    return f"INSERT INTO logs ({_NAMES}) VALUES {', '.join([one] * count)}{_SKIP_STORED}"


async def _sqlite(conn: AsyncConnection, records: Sequence[Record]) -> None:
    for start in range(0, len(records), SQLITE_SLICE_ROWS):
        chunk = records[start : start + SQLITE_SLICE_ROWS]
        await conn.exec_driver_sql(sqlite_insert(len(chunk)), tuple(driver_values(chunk)))


async def _postgresql(conn: AsyncConnection, records: Sequence[Record], copy: bool) -> None:
    """COPY in slices of `_SLICE_ROWS` (the loop encodes them, so a call waits for one slice at most)."""
    for start in range(0, len(records), _SLICE_ROWS):
        values = driver_values(records[start : start + _SLICE_ROWS])
        rows = [tuple(values[i : i + _WIDTH]) for i in range(0, len(values), _WIDTH)]
        copy = copy and await _copied(conn, rows)  # after a failed COPY, INSERT the rest: one transaction
        if not copy:
            await conn.exec_driver_sql(_PG_INSERT, rows)


async def _copied(conn: AsyncConnection, rows: list[tuple[Any, ...]]) -> bool:
    """COPY `rows`, one statement outside a transaction: all stored, or none and False."""
    driver = (await conn.get_raw_connection()).driver_connection
    try:
        await driver.copy_records_to_table("logs", records=rows, columns=LOG_COLUMNS)  # type: ignore[union-attr]
    except Exception:  # the INSERT then either stores them or says why, as a SQLAlchemy error _store classifies
        return False
    return True


async def insert_records(conn: AsyncConnection, records: Sequence[Record], *, replay: bool) -> None:
    """Store `records`, skipping ids already stored; `replay` (a spooled batch) skips PostgreSQL's COPY,
    which cannot skip them and would fail first."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        await _sqlite(conn, records)
    elif dialect == "postgresql" and conn.dialect.driver == "asyncpg":
        await _postgresql(conn, records, copy=not replay)
    else:  # PostgreSQL through another driver: the same statement, through SQLAlchemy
        stmt = pg_insert(logs).on_conflict_do_nothing(index_elements=["id"])
        await conn.execute(stmt, [row(r) for r in records])
