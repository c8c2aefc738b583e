"""Migrations build the schema of tables.py; URLs resolve; SQLite connections carry the pragmas."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from switchpoint.store import db
from switchpoint.store.logs import Condition, where
from switchpoint.store.tables import POSTGRESQL_ONLY_INDEXES, logs, metadata, state_version


def test_migrate_creates_every_table(engine: Engine, data_dir: Path) -> None:
    names = set(inspect(engine).get_table_names())
    assert {"gateway_tokens", "provider_keys", "state_version", "logs", "alembic_version"} <= names
    assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(data_dir / "switchpoint.db").st_mode) == 0o600
    with engine.connect() as conn:
        assert conn.execute(select(state_version)).all() == [(1, 0)]


def test_migration_matches_tables_py(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert sorted((d[0], d[1].name) for d in diff) == [("add_index", n) for n in sorted(POSTGRESQL_ONLY_INDEXES)]
    indexes = {ix["name"] for ix in inspect(engine).get_indexes("logs")}
    assert {"ix_logs_gateway_created_at", "ix_logs_event_id", "ix_logs_created_at"} <= indexes
    assert not indexes & set(POSTGRESQL_ONLY_INDEXES)


def test_event_ids_are_found_through_the_partial_index_and_the_key(engine: Engine) -> None:
    """SQLite indexes only the event ids a client chose; a lookup reaches the others by the primary key."""
    with engine.connect() as conn:
        stmt = select(logs.c.id).where(where(conn, None, [Condition("event_id", "eq", ("evt-1",))]))
        sql = stmt.compile(conn, compile_kwargs={"literal_binds": True})
        plan = " ".join(str(row[3]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
        partial = conn.scalar(text("SELECT sql FROM sqlite_master WHERE name = 'ix_logs_event_id'"))
    assert "ix_logs_event_id" in plan and "sqlite_autoindex_logs_1" in plan
    assert "WHERE event_id <> id" in partial


def test_migrate_again_is_a_no_op(urls: db.StoreUrls, engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(state_version.update().values(credentials=7))
    db.migrate(urls)
    with engine.connect() as conn:
        assert conn.scalar(select(state_version.c.credentials)) == 7


def test_concurrent_first_migrations_serialize(tmp_path: Path) -> None:
    urls = db.StoreUrls.resolve(None, tmp_path / "fresh")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            db.migrate(urls)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    engine = db.sync_engine(urls)
    with engine.connect() as conn:
        assert conn.execute(select(state_version)).all() == [(1, 0)]
    engine.dispose()


def test_resolve_urls(tmp_path: Path) -> None:
    default = db.StoreUrls.resolve(None, tmp_path)
    assert default.sync_url == f"sqlite:///{tmp_path}/switchpoint.db"
    assert default.async_url == f"sqlite+aiosqlite:///{tmp_path}/switchpoint.db"
    explicit = db.StoreUrls.resolve("sqlite:////srv/sp.db", tmp_path)
    assert (explicit.sync_url, explicit.async_url) == ("sqlite:////srv/sp.db", "sqlite+aiosqlite:////srv/sp.db")
    assert db.StoreUrls.resolve("sqlite+aiosqlite:///x.db", tmp_path).sync_url == "sqlite:///x.db"


def test_other_schemes_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'mysql' is not supported"):
        db.StoreUrls.resolve("mysql://u@h/db", tmp_path)


def test_sync_connections_get_pragmas(engine: Engine) -> None:
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 5000


async def test_async_connections_get_pragmas(aengine: AsyncEngine) -> None:
    async with aengine.connect() as conn:
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await conn.execute(text("PRAGMA synchronous"))).scalar() == 1
        assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 5000
