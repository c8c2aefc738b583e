"""SQLite's log inserts on a thread of their own: one stdlib sqlite3 connection, one hand-off per batch.

aiosqlite hops to its thread once per statement and SQLAlchemy wraps every hop again; the log writer only
ever stores whole batches, so a thread that takes a batch and runs BEGIN / INSERT slices / COMMIT costs
about what sqlite3 alone does. Everything else keeps the SQLAlchemy engine: both write the same WAL file,
and busy_timeout makes each wait for the other's write lock.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.request import pathname2url

from switchpoint.store.db import SQLITE_PRAGMAS
from switchpoint.store.logrows import SQLITE_SLICE_ROWS, sqlite_rows
from switchpoint.store.spool import Record

__all__ = ["SqliteBatches", "is_down"]

# What the connection runs first (read when it connects, so a test can shorten busy_timeout).
PRAGMAS: Sequence[str] = SQLITE_PRAGMAS
# Primary result codes meaning the database as a whole cannot take writes now (busy, locked, out of memory,
# read-only, interrupted, I/O error, corrupt, full, cannot open, lock protocol, not a database): retry later.
_DOWN_CODES = frozenset({5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 26})


def is_down(exc: BaseException) -> bool:
    """True when a sqlite3 error says the database is unusable (spool and retry), False when it refused
    these rows (a constraint, a value it cannot bind or store): the same split as `db.is_db_down`."""
    if isinstance(exc, sqlite3.OperationalError | sqlite3.InterfaceError):
        return True  # as SQLAlchemy's OperationalError / InterfaceError, which is_db_down calls down
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and code is not None and code & 0xFF in _DOWN_CODES


class SqliteBatches:
    """Stores batches of log records through one connection owned by one thread (started on first use).

    A batch is one transaction: all of it is stored or none, and the error says which way (`is_down`).
    Ids already stored are skipped (ON CONFLICT DO NOTHING), so a replayed batch is never duplicated.
    """

    def __init__(self, path: Path) -> None:
        # mode=rw: never create the file; `db.migrate` creates it private (0600) with the tables in it
        self._uri = f"file:{pathname2url(str(Path(path).absolute()))}?mode=rw"
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="switchpoint-log-sqlite")
        self._conn: sqlite3.Connection | None = None  # only ever touched on the thread
        self._used = False

    async def insert(self, records: Sequence[Record]) -> None:
        """Store `records` in one transaction on the thread; raises the sqlite3 error when that fails."""
        self._used = True
        await asyncio.get_running_loop().run_in_executor(self._thread, self._insert, records)

    async def close(self) -> None:
        """Close the connection and stop the thread (after a batch still running there, if any)."""
        if self._used:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._disconnect)
        self._thread.shutdown(wait=True)

    # -- on the thread ---------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._uri, uri=True, isolation_level=None)
        try:
            for pragma in PRAGMAS:
                conn.execute(pragma)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _insert(self, records: Sequence[Record]) -> None:
        conn = self._conn or self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")  # the write lock up front, waiting up to busy_timeout for it
            for start in range(0, len(records), SQLITE_SLICE_ROWS):
                conn.execute(*sqlite_rows(records[start : start + SQLITE_SLICE_ROWS]))
            conn.execute("COMMIT")
        except BaseException as exc:
            self._abandon(conn, exc)
            raise

    def _abandon(self, conn: sqlite3.Connection, exc: BaseException) -> None:
        """Roll back; after a failure of the database itself, reconnect for the next batch."""
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            self._disconnect()
            return
        if is_down(exc):
            self._disconnect()
