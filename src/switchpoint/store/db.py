"""Where the store lives and how to reach it: URL resolution, engine factories and in-code Alembic upgrades.

SQLite is the only backend for now; every SQLite connection runs in WAL mode with a busy timeout.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

if sys.platform != "win32":
    import fcntl

DB_FILENAME = "switchpoint.db"
_MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_SYNC_SQLITE = "sqlite://"
_ASYNC_SQLITE = "sqlite+aiosqlite://"
# busy_timeout first, so the pragmas after it wait for a lock instead of failing at once
_PRAGMAS = ("PRAGMA busy_timeout=5000", "PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")


@dataclass(frozen=True, slots=True)
class StoreUrls:
    """The same database as seen by the sync (CLI, migrations) and async (server) drivers."""

    sync_url: str
    async_url: str
    data_dir: Path

    @classmethod
    def resolve(cls, database_url: str | None, data_dir: Path) -> StoreUrls:
        """`database_url` from the config, or None for `{data_dir}/switchpoint.db`."""
        data_dir = Path(data_dir).expanduser()
        if database_url is None:
            database_url = f"sqlite:///{data_dir / DB_FILENAME}"
        for prefix in (_ASYNC_SQLITE, "sqlite+pysqlite://", _SYNC_SQLITE):
            if database_url.startswith(prefix):
                rest = database_url[len(prefix) :]
                return cls(_SYNC_SQLITE + rest, _ASYNC_SQLITE + rest, data_dir)
        scheme = database_url.partition(":")[0]
        raise ValueError(
            f"database_url scheme '{scheme}' is not supported yet; use a sqlite:/// URL "
            "or leave database_url unset for a SQLite file in data_dir"
        )


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def sync_engine(urls: StoreUrls) -> Engine:
    engine = create_engine(urls.sync_url, json_serializer=_json_dumps, json_deserializer=orjson.loads)
    event.listen(engine, "connect", _set_sqlite_pragmas)
    return engine


def async_engine(urls: StoreUrls) -> AsyncEngine:
    engine = create_async_engine(urls.async_url, json_serializer=_json_dumps, json_deserializer=orjson.loads)
    event.listen(engine.sync_engine, "connect", _set_sqlite_pragmas)
    return engine


def alembic_config(urls: StoreUrls) -> AlembicConfig:
    """An Alembic config built in code, so an installed package needs no alembic.ini on disk."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", urls.sync_url.replace("%", "%%"))
    return cfg


def ensure_data_dir(data_dir: Path) -> None:
    """Create the data directory private to its owner (0700); an existing one is left as it is."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)


def _sqlite_file(sync_url: str) -> Path | None:
    database = make_url(sync_url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _create_private_file(path: Path) -> None:
    """Create a new SQLite file as 0600 before SQLite does (it would follow the umask); it holds secrets."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an flock on `lock_path` (across threads and processes); closing the descriptor releases it."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if sys.platform != "win32":
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _begin_immediate(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _migration_engine(urls: StoreUrls) -> Engine:
    """A sync engine whose transactions take SQLite's write lock up front, so an upgrade is one transaction
    (pysqlite would otherwise run the DDL in autocommit) that no other writer can interleave with."""
    engine = create_engine(urls.sync_url, connect_args={"isolation_level": None})
    event.listen(engine, "connect", _set_sqlite_pragmas)
    event.listen(engine, "begin", _begin_immediate)
    return engine


def migrate(urls: StoreUrls) -> None:
    """Upgrade the database to the newest revision; a no-op (one version read) when it is current.

    Upgrades of one SQLite file are serialized by a lock file beside it: concurrent first opens of a fresh
    file can otherwise fail with "database is locked" despite busy_timeout (seen under load in tests).
    """
    ensure_data_dir(urls.data_dir)
    path = _sqlite_file(urls.sync_url)
    if path is None:
        _upgrade(urls)
        return
    _create_private_file(path)
    with _exclusive(path.with_name(path.name + ".migrate-lock")):
        _upgrade(urls)


def _upgrade(urls: StoreUrls) -> None:
    cfg = alembic_config(urls)
    head = ScriptDirectory.from_config(cfg).get_current_head()
    engine = _migration_engine(urls)
    try:
        with engine.begin() as conn:
            if MigrationContext.configure(conn).get_current_revision() == head:
                return
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        engine.dispose()
