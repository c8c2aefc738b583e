"""The SQLite write path of the log writer: its own thread and sqlite3 connection, on real database files."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from switchpoint.store import db, sqlite_batches
from switchpoint.store.logwriter import LogWriter, decode_record
from switchpoint.store.sqlite_batches import SqliteBatches, is_down
from switchpoint.store.tables import metadata
from tests.store.test_logwriter import by_id, stored, wait_until

Factory = Callable[..., dict[str, Any]]
_THREAD = "switchpoint-log-sqlite"


def db_file(urls: db.StoreUrls) -> Path:
    path = db.sqlite_file(urls.sync_url)
    assert path is not None
    return path


def log_threads() -> set[threading.Thread]:
    """The log writer threads alive now (a gateway other tests share may own one, so compare sets)."""
    return {t for t in threading.enumerate() if t.name.startswith(_THREAD)}


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool" / "logs.ndjson"


@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    pragmas = tuple(p for p in db.SQLITE_PRAGMAS if "busy_timeout" not in p)
    monkeypatch.setattr(sqlite_batches, "PRAGMAS", ("PRAGMA busy_timeout=50", *pragmas))


@pytest.fixture
def locker(urls: db.StoreUrls) -> Iterator[sqlite3.Connection]:
    """A second connection on the same file, for a test to hold its write lock."""
    conn = sqlite3.connect(db_file(urls), isolation_level=None)
    yield conn
    conn.close()


async def test_rows_land_with_their_values(
    urls: db.StoreUrls, aengine: AsyncEngine, spool: Path, make_record: Factory
) -> None:
    records = [make_record(i) for i in range(150)]  # more than one INSERT slice
    records.append(make_record(200, metadata=None, request_body=None, response_body=b"", custom_cost=True))
    writer = LogWriter(aengine, spool, batch_size=500, flush_interval=0.01)
    await writer.start()
    for r in records:
        writer.submit(r)
    await writer.close()
    assert await stored(aengine) == by_id(records)  # through SQLAlchemy: bytes, JSON and booleans round-trip
    with sqlite3.connect(db_file(urls)) as conn:  # and as stored: blobs, JSON text, 0/1
        raw = conn.execute(
            "SELECT request_body, response_body, metadata, success, cached, custom_cost FROM logs WHERE id = ?",
            (records[3]["id"],),
        ).fetchone()
    r = records[3]
    assert raw[:2] == (r["request_body"], r["response_body"])
    assert orjson.loads(raw[2]) == r["metadata"]
    assert raw[3:] == (1, int(r["cached"]), 0)


async def test_columns_no_record_sets_are_stored_as_null(
    urls: db.StoreUrls, aengine: AsyncEngine, make_record: Factory
) -> None:
    """A slice whose records all lack a value (a batch of cache hits: no step, route, metadata or error)
    leaves those columns out of its INSERT; what is stored is the same as binding NULL row by row."""
    unset = {"step": None, "metadata": None, "error": None, "route": None, "route_path": None, "ttfb_ms": None}
    bare = [make_record(i, **unset) for i in range(70)]  # a full slice of them, then a mixed one
    mixed = [make_record(100), make_record(101, **unset, request_body=None)]
    batches = SqliteBatches(db_file(urls))
    await batches.insert(bare + mixed)
    await batches.close()
    assert await stored(aengine) == by_id(bare + mixed)
    with sqlite3.connect(db_file(urls)) as conn:
        types = set(
            conn.execute(
                "SELECT typeof(step), typeof(route), typeof(metadata), typeof(success), typeof(cached),"
                " typeof(request_body), typeof(response_body) FROM logs WHERE id IN (?, ?)",
                (bare[0]["id"], mixed[1]["id"]),
            )
        )
    assert types == {
        ("null", "null", "null", "integer", "integer", "blob", "blob"),
        ("null",) * 3 + ("integer",) * 2 + ("null", "blob"),
    }


async def test_a_replayed_batch_is_not_duplicated(
    urls: db.StoreUrls, aengine: AsyncEngine, make_record: Factory
) -> None:
    records = [make_record(i) for i in range(100)]
    batches = SqliteBatches(db_file(urls))
    await batches.insert(records[:70])
    await batches.insert(records)  # ids 0..69 again: skipped, not failed, not duplicated
    await batches.insert([make_record(i, cost=99.0) for i in range(10)])  # stored rows are kept as they were
    await batches.close()
    assert await stored(aengine) == by_id(records)


async def test_refused_rows_are_set_aside_and_the_rest_land(
    aengine: AsyncEngine, spool: Path, make_record: Factory
) -> None:
    good = [make_record(i) for i in range(20)]
    null = make_record(98, account=None)  # NOT NULL: IntegrityError
    unbindable = make_record(99, model=["not", "a", "string"])  # cannot be bound: ProgrammingError
    writer = LogWriter(aengine, spool, flush_interval=0.01)
    await writer.start()
    for r in [*good[:7], null, *good[7:15], unbindable, *good[15:]]:
        writer.submit(r)
    await writer.close()
    assert await stored(aengine) == by_id(good)
    c = writer.counters
    assert (c["written"], c["rejected"], c["spooled"], c["dropped"]) == (20, 2, 0, 0)
    rejected = [decode_record(line)["id"] for line in writer.rejected_path.read_bytes().splitlines()]
    assert rejected == [null["id"], unbindable["id"]]


@pytest.mark.usefixtures("short_busy_timeout")
async def test_a_locked_database_spools_and_replays_once_released(
    aengine: AsyncEngine, spool: Path, locker: sqlite3.Connection, make_record: Factory
) -> None:
    records = [make_record(i) for i in range(60)]
    writer = LogWriter(aengine, spool, batch_size=10, flush_interval=0.01)
    await writer.start()
    writer.submit(records[0])
    await wait_until(lambda: writer.counters["written"] == 1)
    locker.execute("BEGIN EXCLUSIVE")  # held far past busy_timeout
    for r in records[1:]:
        writer.submit(r)
    await wait_until(lambda: writer.counters["spooled"] == 59)
    assert writer.counters["written"] == 1 and writer.counters["rejected"] == 0
    locker.execute("COMMIT")
    await wait_until(lambda: writer.counters["written"] == 60)
    await writer.close()
    assert await stored(aengine) == by_id(records)
    assert writer.counters["spool_bytes"] == 0 and writer.counters["rejected"] == 0


async def test_a_batch_cancelled_on_the_thread_is_spooled_and_replayed_once(
    monkeypatch: pytest.MonkeyPatch,
    aengine: AsyncEngine,
    spool: Path,
    locker: sqlite3.Connection,
    make_record: Factory,
) -> None:
    pragmas = tuple(p for p in db.SQLITE_PRAGMAS if "busy_timeout" not in p)
    monkeypatch.setattr(sqlite_batches, "PRAGMAS", ("PRAGMA busy_timeout=1500", *pragmas))
    records = [make_record(i) for i in range(30)]
    before = log_threads()
    writer = LogWriter(aengine, spool, flush_interval=0.01)
    await writer.start()
    locker.execute("BEGIN EXCLUSIVE")
    for r in records:
        writer.submit(r)
    await asyncio.sleep(0.3)  # the batch waits on the thread for the lock
    await writer.close(timeout=0.1)  # cancels it: spooled, and close waits for the thread to let go
    assert writer.counters["spooled"] == 30 and writer.counters["written"] == 0
    assert log_threads() == before
    locker.execute("COMMIT")

    second = LogWriter(aengine, spool)
    await second.start()
    await second.close()
    assert await stored(aengine) == by_id(records)
    assert second.counters["written"] == 30 and second.counters["spool_bytes"] == 0


async def test_the_engine_writes_beside_the_thread(aengine: AsyncEngine, spool: Path, make_record: Factory) -> None:
    """The SQLAlchemy engine (logs API, retention) and the writer thread share the WAL file."""
    writer = LogWriter(aengine, spool, batch_size=5, flush_interval=0.001)
    await writer.start()
    records = [make_record(i) for i in range(200)]
    for i, r in enumerate(records):
        writer.submit(r)
        if i % 20 == 0:
            async with aengine.begin() as conn:
                await conn.exec_driver_sql("UPDATE logs SET feedback = 1")
            await asyncio.sleep(0)
    await writer.close()
    assert len(await stored(aengine)) == 200
    assert (writer.counters["written"], writer.counters["spooled"]) == (200, 0)


async def test_close_stops_the_thread(aengine: AsyncEngine, spool: Path, make_record: Factory) -> None:
    before = log_threads()
    writer = LogWriter(aengine, spool, flush_interval=0.01)
    await writer.start()
    writer.submit(make_record(1))
    await wait_until(lambda: writer.counters["written"] == 1)
    assert len(log_threads() - before) == 1
    await writer.close()
    assert log_threads() == before
    unused = LogWriter(aengine, spool)
    await unused.close()  # never started: no thread was made just to be stopped
    assert log_threads() == before


def test_sqlite_errors_are_classified_as_down_or_refused(urls: db.StoreUrls, tmp_path: Path) -> None:
    with sqlite3.connect(db_file(urls), isolation_level=None) as conn:
        with pytest.raises(sqlite3.IntegrityError) as refused:
            conn.execute("INSERT INTO logs (id) VALUES ('x')")
        with pytest.raises(sqlite3.ProgrammingError) as unbindable:
            conn.execute("SELECT ?", ([1],))
        with pytest.raises(sqlite3.OperationalError) as missing_table:
            conn.execute("INSERT INTO nope VALUES (1)")
    (tmp_path / "garbage.db").write_bytes(b"not a database" * 100)
    with pytest.raises(sqlite3.DatabaseError) as not_a_db, sqlite3.connect(tmp_path / "garbage.db") as conn:
        conn.execute("SELECT * FROM logs")
    with pytest.raises(sqlite3.OperationalError) as cannot_open:
        sqlite3.connect(f"file:{tmp_path / 'missing' / 'x.db'}?mode=rw", uri=True)
    assert not is_down(refused.value) and not is_down(unbindable.value)
    assert is_down(missing_table.value) and is_down(not_a_db.value) and is_down(cannot_open.value)
    assert not is_down(ValueError("not a sqlite3 error"))


async def test_an_in_memory_database_is_written_through_the_engine(make_record: Factory, tmp_path: Path) -> None:
    """No file for a second connection to open: the writer keeps SQLAlchemy's connection (no thread)."""
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    records = [make_record(i) for i in range(100)]
    before = log_threads()
    writer = LogWriter(engine, tmp_path / "spool.ndjson", flush_interval=0.01)
    await writer.start()
    for r in records:
        writer.submit(r)
        await asyncio.sleep(0)
    assert log_threads() == before
    await writer.close()
    assert await stored(engine) == by_id(records)
    await engine.dispose()
