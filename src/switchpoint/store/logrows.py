"""How a batch of log records reaches the driver: the cheapest statement each backend offers for it.

SQLite takes multi-row INSERTs of up to 64 rows (one statement step each, so the thread running them
releases and retakes the GIL once per slice instead of once per row), run by `sqlite_batches` on its own
connection, or here through SQLAlchemy for an in-memory database; PostgreSQL takes a binary COPY. Both skip
ids already stored (`ON CONFLICT (id) DO NOTHING`; COPY falls back to that INSERT when it fails), so a batch
replayed after a doubt (cancelled mid-commit, spooled, replayed) is never duplicated and never fails for it.
"""

from __future__ import annotations

import functools
import operator
import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Boolean
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from switchpoint.store.spool import Record, row
from switchpoint.store.tables import BINARY_LOG_COLUMNS, LOG_COLUMNS, logs

_WIDTH = len(LOG_COLUMNS)
_ROW = operator.itemgetter(*LOG_COLUMNS)
_METADATA = LOG_COLUMNS.index("metadata")
_CUSTOM_COST = LOG_COLUMNS.index("custom_cost")
_BOOLEANS = tuple(i for i, column in enumerate(logs.columns) if isinstance(column.type, Boolean))
_BLOBS = tuple(i for i, name in enumerate(LOG_COLUMNS) if name in BINARY_LOG_COLUMNS)
_REQUIRED = frozenset(i for i, column in enumerate(logs.columns) if not column.nullable)
# Rows per statement: SQLite's thread holds the GIL while it binds them and the core while it stores them,
# and asyncpg encodes a COPY on the loop, so a call arriving meanwhile waits for one slice, not the batch.
# (SQLite binds at most 32766 parameters in one statement, 999 before 3.32.)
_SLICE_ROWS = 64
SQLITE_SLICE_ROWS = min(_SLICE_ROWS, (32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999) // _WIDTH)
_NAMES = ", ".join(LOG_COLUMNS)
_SKIP_STORED = " ON CONFLICT (id) DO NOTHING"
_PG_INSERT = f"INSERT INTO logs ({_NAMES}) VALUES ({', '.join(f'${i}' for i in range(1, _WIDTH + 1))}){_SKIP_STORED}"


def driver_columns(records: Sequence[Record]) -> list[Sequence[Any]]:
    """The records' values in LOG_COLUMNS order as the drivers take them (metadata as JSON text, a missing
    custom_cost False), one sequence per column: each record read in one C call, then transposed."""
    try:
        rows = list(map(_ROW, records))
    except KeyError:  # a record made elsewhere may lack columns (the exchange's have them all): None there
        rows = [tuple(map(record.get, LOG_COLUMNS)) for record in records]
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [()] * _WIDTH
    columns[_METADATA] = [None if m is None else orjson.dumps(m).decode() for m in columns[_METADATA]]
    columns[_CUSTOM_COST] = [False if c is None else c for c in columns[_CUSTOM_COST]]
    return columns


def sqlite_rows(records: Sequence[Record]) -> tuple[str, list[Any]]:
    """The multi-row INSERT of `records` and its parameters, in the shape sqlite3 binds cheapest.

    sqlite3 binds an exact int, float, str or bytearray as it is; any other value (None, a bool, bytes)
    first goes through its adapter registry, whose miss raises and clears an AttributeError: ~3.5k
    instructions a value, a third of a record's whole cost. So booleans go as 0/1 and bodies as
    bytearrays (what SQLite stores for them anyway), and a column no record sets is left out of the
    statement (stored as NULL) instead of being bound as None row after row.
    """
    count = len(records)
    columns = driver_columns(records)
    kept = tuple(i for i, column in enumerate(columns) if i in _REQUIRED or column.count(None) != count)
    for i in _BOOLEANS:
        columns[i] = [1 if v is True else 0 if v is False else v for v in columns[i]]
    for i in _BLOBS:
        columns[i] = [bytearray(v) if type(v) is bytes else v for v in columns[i]]
    width = len(kept)
    params: list[Any] = [None] * (count * width)  # row after row, filled column by column
    for place, i in enumerate(kept):
        params[place::width] = columns[i]
    return sqlite_insert(count, kept), params


@functools.lru_cache(maxsize=256)
def sqlite_insert(count: int, kept: tuple[int, ...]) -> str:
    """`count` rows of the columns at `kept` (indexes into LOG_COLUMNS)."""
    one = "(" + ", ".join("?" * len(kept)) + ")"
    names = ", ".join(LOG_COLUMNS[i] for i in kept)
    return f"INSERT INTO logs ({names}) VALUES {', '.join([one] * count)}{_SKIP_STORED}"


async def _sqlite(conn: AsyncConnection, records: Sequence[Record]) -> None:
    for start in range(0, len(records), SQLITE_SLICE_ROWS):
        statement, params = sqlite_rows(records[start : start + SQLITE_SLICE_ROWS])
        await conn.exec_driver_sql(statement, tuple(params))


async def _postgresql(conn: AsyncConnection, records: Sequence[Record], copy: bool) -> None:
    """COPY in slices of `_SLICE_ROWS` (the loop encodes them, so a call waits for one slice at most)."""
    for start in range(0, len(records), _SLICE_ROWS):
        rows = list(zip(*driver_columns(records[start : start + _SLICE_ROWS]), strict=True))
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
