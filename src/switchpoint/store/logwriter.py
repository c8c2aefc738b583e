"""Call-log persistence that never blocks the hot path: a bounded queue drained in one-transaction batches.

Whatever the database cannot take right now goes to an NDJSON spool beside it and is replayed later, so a
record is only ever lost when the spool itself cannot be written (counted as `dropped` and logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections import deque
from pathlib import Path
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from switchpoint.store import sqlite_batches
from switchpoint.store.db import is_db_down, sqlite_file
from switchpoint.store.logrows import insert_records
from switchpoint.store.spool import (
    Record,
    decode_record,
    encode_record,
    file_size,
    open_append,
    read_chunk,
    write_all,
)
from switchpoint.store.sqlite_batches import SqliteBatches

__all__ = ["Capacity", "LogWriter", "Record", "decode_record", "encode_record"]

_log = logging.getLogger("switchpoint.logs")
_BACKOFF_MIN = 0.5
_BACKOFF_MAX = 10.0
_DROP_LOG_EVERY_S = 10.0
# What a failed insert raises: through SQLAlchemy, or from the SQLite writer thread's own connection.
_STORE_ERRORS = (SQLAlchemyError, sqlite3.Error)


def _is_down(exc: BaseException) -> bool:
    return sqlite_batches.is_down(exc) if isinstance(exc, sqlite3.Error) else is_db_down(exc)


class Capacity(Protocol):
    """How many more records the store takes (retention `stop_inserting`); told how many were written."""

    def admit(self, count: int) -> int: ...

    def wrote(self, count: int) -> None: ...


class LogWriter:
    """Accepts log records with `submit`, writes them in batches, spools them when the store is down.

    One writer per spool file: with several worker processes, give each its own `spool_path`.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        spool_path: Path,
        *,
        queue_size: int = 50000,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        capacity: Capacity | None = None,
    ) -> None:
        self._engine = engine
        # A SQLite file gets a writer thread of its own; PostgreSQL (and in-memory SQLite) the engine.
        path = sqlite_file(engine.url) if engine.dialect.name == "sqlite" else None
        self._sqlite = SqliteBatches(path) if path is not None else None
        self._capacity = capacity
        self._last_drop_log = -_DROP_LOG_EVERY_S
        self._spool = Path(spool_path)
        self._draining = self._spool.with_name(self._spool.name + ".draining")
        self.rejected_path = self._spool.with_name(self._spool.name + ".rejected")
        self._queue: deque[Record] = deque()  # bounded by `queue_size` in submit; cheaper than asyncio.Queue
        self._queue_size = queue_size
        self._waiter: asyncio.Future[None] | None = None  # the drain loop waiting for a first record
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._counts = dict.fromkeys(("accepted", "written", "spooled", "dropped", "rejected"), 0)
        self._batch: list[Record] = []  # the batch being collected, spooled if cancelled mid-way
        self._drain_offset = 0
        self._spool_fd: int | None = None
        self._db_down = self._closing = self._closed = self._queue_drained = False
        self._spool_wake = asyncio.Event()
        self._close_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def counters(self) -> dict[str, int]:
        """accepted = written + rejected + dropped + queue_depth + records still in the spool (at rest)."""
        spool_bytes = file_size(self._spool) + max(0, file_size(self._draining) - self._drain_offset)
        return {**self._counts, "queue_depth": len(self._queue), "spool_bytes": spool_bytes}

    def submit(self, record: Record) -> None:
        """Queue one record; never blocks or raises. The caller must not mutate it afterwards."""
        self._counts["accepted"] += 1
        if not self._closing and len(self._queue) < self._queue_size:
            self._queue.append(record)
            if self._waiter is not None:
                self._wake_drain()
            return
        self._spool_records([record])

    def _wake_drain(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._drain_loop()), asyncio.create_task(self._spool_loop())]

    async def close(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - the bound is part of the API
        """Write out the queue and the spool; after `timeout` seconds whatever is left stays in the spool."""
        if self._closed:
            return
        self._closing = True
        self._close_wake.set()
        self._spool_wake.set()
        self._wake_drain()
        try:
            async with asyncio.timeout(timeout):
                for task in self._tasks:
                    await asyncio.wait([task])
        except TimeoutError:
            _log.warning("log writer closed before the store took everything; the rest stays in %s", self._spool)
        await self._stop_tasks()
        if self._sqlite is not None:
            await self._sqlite.close()
        self._closed = True

    async def _stop_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
            await asyncio.wait([task])
        batch, self._batch = self._batch, []
        self._spool_records(batch + list(self._queue))
        self._queue.clear()
        if self._spool_fd is not None:
            os.close(self._spool_fd)
            self._spool_fd = None

    # -- the queue side -------------------------------------------------------------------------------

    async def _drain_loop(self) -> None:
        while not (self._closing and not self._queue):
            await self._collect()
            batch, self._batch = self._batch, []
            if batch:
                await self._persist(batch)
        self._queue_drained = True
        self._spool_wake.set()

    async def _collect(self) -> None:
        """Fill `self._batch`: wait for one record, then let up to `flush_interval` pass for company.

        Sleeping once per batch instead of waiting per record keeps the writer's cost per record to a deque
        append and pop: a timed wait per record would cost a timer and a future for every call served.
        """
        if not self._queue:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if not self._queue:  # woken by close
            return
        if len(self._queue) < self._batch_size and not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._flush_interval):
                    await self._close_wake.wait()
        pop = self._queue.popleft
        self._batch.extend([pop() for _ in range(min(self._batch_size, len(self._queue)))])

    async def _persist(self, batch: list[Record]) -> None:
        rows = batch
        if self._db_down and self._spool_pending():  # the spool loop is probing; do not hammer the store
            self._spool_records(rows)
            return
        try:
            written = await self._store(rows, dedupe=False)
            self._counts["written"] += written  # not `+= await`: that would read the count before awaiting
        except asyncio.CancelledError:
            self._spool_records(rows)  # the insert may have committed: replay skips ids already stored
            raise
        except Exception as exc:
            # The one broad catch: whatever failed (driver, network, disk, a bug), the records must land
            # on disk rather than vanish; the spool loop replays them once the store accepts writes.
            self._mark_down(exc)
            self._spool_records(rows)

    # -- the database side ----------------------------------------------------------------------------

    async def _store(self, rows: list[Record], *, dedupe: bool) -> int:
        """Insert what the capacity admits, then drop the rest; a failure raises before anything is counted,
        so the caller spools (or retries) the whole batch."""
        admitted = len(rows) if self._capacity is None else self._capacity.admit(len(rows))
        written = 0
        if admitted:
            try:
                written = await self._insert(rows[:admitted], dedupe=dedupe)
            except _STORE_ERRORS as exc:
                if _is_down(exc):
                    raise
                written = await self._store_each(rows[:admitted])  # the store refused a record: set it aside
        if admitted < len(rows):
            self._discard(len(rows) - admitted)
        if self._capacity is not None:
            self._capacity.wrote(written)
        return written

    async def _store_each(self, rows: list[Record]) -> int:
        written = 0
        for row in rows:
            try:
                written += await self._insert([row], dedupe=True)
            except _STORE_ERRORS as exc:
                if _is_down(exc):
                    raise
                self._reject(encode_record(row), f"{row.get('id')}: {exc}")
        return written

    def _discard(self, count: int) -> None:
        """Retention `stop_inserting` with the store full: drop, count, and say so (at most every 10 s)."""
        self._counts["dropped"] += count
        now = time.monotonic()
        if now - self._last_drop_log >= _DROP_LOG_EVERY_S:
            self._last_drop_log = now
            total = self._counts["dropped"]
            _log.error("log store is full (retention stop_inserting): dropped %d record(s), %d in all", count, total)

    async def _insert(self, rows: list[Record], *, dedupe: bool) -> int:
        """One transaction, one statement (per backend limit); `dedupe`: a replay, whose ids may be stored."""
        if self._sqlite is not None:
            await self._sqlite.insert(rows)
            return len(rows)
        async with self._engine.begin() as conn:
            await insert_records(conn, rows, replay=dedupe)
        return len(rows)

    def _mark_down(self, exc: BaseException) -> None:
        if not self._db_down:
            _log.warning("log store unavailable (%s); spooling records to %s", exc, self._spool)
        self._db_down = True

    # -- the spool side -------------------------------------------------------------------------------

    def _spool_records(self, records: list[Record]) -> None:
        lines: list[bytes] = []
        for record in records:
            try:
                lines.append(encode_record(record))
            except TypeError as exc:
                self._drop(1, f"unencodable log record {record.get('id')}: {exc}")
        if not lines:
            return
        try:
            self._append(b"".join(lines))
        except OSError as exc:
            self._drop(len(lines), f"cannot write the log spool {self._spool}: {exc}")
            return
        self._counts["spooled"] += len(lines)
        self._spool_wake.set()

    def _append(self, data: bytes) -> None:
        if self._spool_fd is None:
            self._spool_fd = open_append(self._spool)
        write_all(self._spool_fd, data)

    def _drop(self, count: int, why: str) -> None:
        self._counts["dropped"] += count
        _log.error("dropped %d log record(s): %s", count, why)

    def _reject(self, line: bytes, why: str) -> None:
        """Keep a record the store refuses in `rejected_path`, so it neither blocks the spool nor vanishes."""
        try:
            fd = open_append(self.rejected_path)
            try:
                write_all(fd, line if line.endswith(b"\n") else line + b"\n")
            finally:
                os.close(fd)
        except OSError as exc:
            self._drop(1, f"cannot write {self.rejected_path}: {exc}")
            return
        self._counts["rejected"] += 1
        _log.error("log record refused by the store, kept in %s: %s", self.rejected_path, why)

    def _spool_pending(self) -> bool:
        return self._draining.exists() or file_size(self._spool) > 0

    async def _spool_loop(self) -> None:
        delay = _BACKOFF_MIN
        while True:
            if not self._spool_pending():
                if self._queue_drained:
                    return
                self._spool_wake.clear()
                await self._spool_wake.wait()
                continue
            try:
                await self._drain_spool()
                delay = _BACKOFF_MIN
            except Exception as exc:  # same reason as in _persist: keep the spool, retry later
                self._mark_down(exc)
                await self._pause(delay)
                delay = min(delay * 2, _BACKOFF_MAX)

    async def _pause(self, delay: float) -> None:
        """Back off, cut short once when `close` starts so it gets an immediate final attempt."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._close_wake.wait(), delay)
        self._close_wake.clear()

    async def _drain_spool(self) -> None:
        """Rename the spool aside (new records start a fresh file), then replay it batch by batch."""
        if not self._draining.exists():
            if self._spool_fd is not None:
                os.close(self._spool_fd)
                self._spool_fd = None
            os.replace(self._spool, self._draining)
            self._drain_offset = 0
        while chunk := await asyncio.to_thread(read_chunk, self._draining, self._drain_offset, self._batch_size):
            records, bad, end = chunk
            if records:
                written = await self._store(records, dedupe=True)
                self._counts["written"] += written
            for line in bad:  # only once the chunk is through, so a retry does not set them aside twice
                self._reject(line, "undecodable spool line")
            if self._db_down:
                _log.warning("log store reachable again; draining %s", self._draining)
                self._db_down = False
            self._drain_offset = end
        self._draining.unlink()
        self._drain_offset = 0
