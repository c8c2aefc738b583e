"""The PostgreSQL backend: URL resolution, the same migrations, exact round trips through the writer's asyncpg
fast path, and which asyncpg failures count as "the store is down" (spool and retry) rather than a refusal."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, inspect, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from switchpoint.store import db
from switchpoint.store.logwriter import LogWriter, encode_record
from switchpoint.store.tables import POSTGRESQL_ONLY_INDEXES, logs, metadata, state_version
from tests.store.conftest import record
from tests.support.postgres import free_port, pg_database, pg_url

__all__ = ["pg_database"]


@pytest.fixture(scope="module")
def pg(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> db.StoreUrls:
    urls = db.StoreUrls.resolve(pg_database, tmp_path_factory.mktemp("pgdata"))
    db.migrate(urls)
    return urls


@pytest.mark.parametrize(
    "url",
    ["postgresql://u:p@h:5433/d", "postgres://u:p@h:5433/d", "postgresql+asyncpg://u:p@h:5433/d",
     "postgresql+psycopg://u:p@h:5433/d"],
)  # fmt: skip
def test_postgres_urls_resolve_to_both_drivers(url: str, tmp_path: Path) -> None:
    urls = db.StoreUrls.resolve(url, tmp_path)
    assert (urls.sync_url, urls.async_url) == ("postgresql+psycopg://u:p@h:5433/d", "postgresql+asyncpg://u:p@h:5433/d")
    assert not urls.is_sqlite and db.StoreUrls.resolve(None, tmp_path).is_sqlite


def test_unknown_schemes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'mysql' is not supported"):
        db.StoreUrls.resolve("mysql://u@h/db", tmp_path)


def test_migrations_build_the_same_schema(pg: db.StoreUrls) -> None:
    engine = db.sync_engine(pg)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
            assert [d[1].name for d in diff] == ["ix_logs_metadata"]  # PostgreSQL-only; see tables.py
            assert conn.execute(select(state_version)).all() == [(1, 0)]
        types = {c["name"]: str(c["type"]) for c in inspect(engine).get_columns("logs")}
        indexes = {ix["name"]: ix for ix in inspect(engine).get_indexes("logs")}
    finally:
        engine.dispose()
    assert (types["metadata"], types["request_body"], types["created_at"]) == ("JSONB", "BYTEA", "DOUBLE PRECISION")
    assert indexes["ix_logs_metadata"]["dialect_options"]["postgresql_using"] == "gin"
    assert "duration_ms" in indexes["ix_logs_gateway_created_at"]["dialect_options"]["postgresql_include"]


def test_migrate_again_is_a_no_op_and_concurrent_upgrades_serialize(pg: db.StoreUrls, pg_database: str) -> None:
    db.migrate(pg)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            db.migrate(pg)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def statements_into_logs(engine: AsyncEngine) -> list[str]:
    """Every INSERT into logs that goes through SQLAlchemy's cursor from now on (COPY does not)."""
    seen: list[str] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _seen(_conn: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        if statement.startswith("INSERT INTO logs"):
            seen.append(statement)

    return seen


async def test_writer_round_trips_every_column_through_asyncpg(pg: db.StoreUrls, tmp_path: Path) -> None:
    engine = db.async_engine(pg)
    try:
        inserts = statements_into_logs(engine)
        records = [record(i) for i in range(300)] + [record(300, metadata=None, request_body=None, cost=None)]
        writer = LogWriter(engine, tmp_path / "spool.ndjson", batch_size=64, flush_interval=0.01)
        await writer.start()
        for r in records:
            writer.submit(r)
        await writer.close()
        async with engine.connect() as conn:
            stored = {r.id: dict(r._mapping) for r in await conn.execute(select(logs))}
            await conn.execute(text("DELETE FROM logs"))
            await conn.commit()
    finally:
        await engine.dispose()
    assert writer.counters["written"] == len(records) and writer.counters["spooled"] == 0
    assert inserts == []  # every batch went by COPY, which bypasses SQLAlchemy's cursor
    for r in records:
        row = stored[r["id"]]
        assert {k: row[k] for k in r} == r
        assert (row["feedback"], row["score"]) == (None, None)


async def stored_rows(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    async with engine.begin() as conn:
        rows = {r.id: dict(r._mapping) for r in await conn.execute(select(logs))}
        await conn.execute(text("DELETE FROM logs"))
    return rows


async def test_copy_failures_fall_back_to_an_insert_that_skips_stored_ids(pg: db.StoreUrls, tmp_path: Path) -> None:
    """COPY cannot skip stored ids or set a refused row aside: the batch goes again by INSERT ON CONFLICT."""
    engine = db.async_engine(pg)
    try:
        first = [record(i) for i in range(10)]
        fresh = [record(i) for i in range(100, 164)]  # one COPY slice that goes through
        again = fresh + [record(i, cost=99.0) for i in range(5, 15)] + [record(99, gateway=None)]  # NOT NULL
        writers = []
        for batch in (first, again):
            writer = LogWriter(engine, tmp_path / "spool.ndjson", flush_interval=0.01)
            await writer.start()
            for r in batch:
                writer.submit(r)
            await writer.close()
            writers.append(writer)
        rows = await stored_rows(engine)
    finally:
        await engine.dispose()
    kept = first + fresh + again[-6:-1]  # the stored rows stay as they were; the refused one is set aside
    assert {k: row["cost"] for k, row in rows.items()} == {r["id"]: r["cost"] for r in kept}
    counts = writers[1].counters
    assert (counts["written"], counts["rejected"], counts["spooled"]) == (len(again) - 1, 1, 0)


async def test_replay_skips_ids_already_stored(pg: db.StoreUrls, tmp_path: Path) -> None:
    """A spool replayed after a doubt (the batch may have committed) stores each record exactly once."""
    spool = tmp_path / "replay" / "spool.ndjson"
    spool.parent.mkdir()
    records = [record(i) for i in range(20)]
    engine = db.async_engine(pg)
    try:
        async with engine.begin() as conn:
            await conn.execute(logs.insert(), records[:10])
        spool.with_name(spool.name + ".draining").write_bytes(b"".join(map(encode_record, records)))
        writer = LogWriter(engine, spool, batch_size=6)
        await writer.start()
        await writer.close()
        rows = await stored_rows(engine)
    finally:
        await engine.dispose()
    assert sorted(rows) == sorted(r["id"] for r in records)
    assert (writer.counters["written"], writer.counters["rejected"]) == (20, 0)


async def test_writer_spools_while_postgres_refuses_connections(pg: db.StoreUrls, tmp_path: Path) -> None:
    spool = tmp_path / "spool.ndjson"
    dead = db.async_engine(db.StoreUrls.resolve(pg_url("nowhere", free_port()), tmp_path))
    writer = LogWriter(dead, spool, flush_interval=0.01)
    await writer.start()
    for i in range(20):
        writer.submit(record(i))
    await writer.close(timeout=1)
    await dead.dispose()
    assert writer.counters["spooled"] == 20 and writer.counters["rejected"] == 0
    live = db.async_engine(pg)
    replay = LogWriter(live, spool, flush_interval=0.01)
    await replay.start()
    await replay.close()
    async with live.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM logs"))).scalar() == 20
        await conn.execute(text("DELETE FROM logs"))
        await conn.commit()
    await live.dispose()


async def test_asyncpg_failures_are_classified(pg: db.StoreUrls, tmp_path: Path) -> None:
    """A terminated session (as in a server shutdown) and a refused connection mean "down"; a duplicate
    key means the store refused the row."""
    engine = db.async_engine(pg)
    try:
        async with engine.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar()
            async with engine.connect() as killer:
                await killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            with pytest.raises(DBAPIError) as terminated:
                await conn.execute(text("SELECT 1"))
        assert db.is_db_down(terminated.value)
        async with engine.begin() as conn:
            await conn.execute(logs.insert(), [record(1)])
        with pytest.raises(IntegrityError) as duplicate:
            async with engine.begin() as conn:
                await conn.execute(logs.insert(), [record(1)])
        assert not db.is_db_down(duplicate.value)
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM logs"))
        await engine.dispose()
    refused = db.async_engine(db.StoreUrls.resolve(pg_url("nowhere", free_port()), tmp_path))
    with pytest.raises(OSError) as no_server:
        async with refused.connect():
            pass
    await refused.dispose()
    assert db.is_db_down(no_server.value)


def test_sqlstate_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    class Orig(Exception):
        def __init__(self, sqlstate: str) -> None:
            super().__init__(sqlstate)
            self.sqlstate = sqlstate

    def error(state: str) -> Any:
        return DBAPIError("SELECT 1", None, Orig(state))

    assert all(db.is_db_down(error(s)) for s in ("57P01", "57P03", "08006", "53300"))
    assert not any(db.is_db_down(error(s)) for s in ("23505", "22003", "42P01"))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_0003_downgrades_and_upgrades_again(backend: str, pg: db.StoreUrls, tmp_path: Path) -> None:
    urls = db.StoreUrls.resolve(None, tmp_path) if backend == "sqlite" else pg
    db.migrate(urls)
    cfg = db.alembic_config(urls)
    command.downgrade(cfg, "0002_routes")
    engine = db.sync_engine(urls)
    try:
        assert "feedback" not in {col["name"] for col in inspect(engine).get_columns("logs")}
        command.upgrade(cfg, "head")
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    expected = sorted(POSTGRESQL_ONLY_INDEXES) if backend == "sqlite" else ["ix_logs_metadata"]
    assert sorted(d[1].name for d in diff) == expected
