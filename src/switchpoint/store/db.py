"""Where the store lives and how to reach it: URL resolution, engine factories and in-code Alembic upgrades.

SQLite (the default, a file in data_dir) runs every connection in WAL mode with a busy timeout. PostgreSQL
is chosen by a `postgresql://` URL: the server talks to it through asyncpg, the CLI and Alembic through
psycopg, and pooled connections are pinged before use so a restarted server is noticed at once.
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
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

if sys.platform != "win32":
    import fcntl

DB_FILENAME = "switchpoint.db"
_MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_SYNC_SQLITE = "sqlite://"
_ASYNC_SQLITE = "sqlite+aiosqlite://"
_SYNC_PG = "postgresql+psycopg://"
_ASYNC_PG = "postgresql+asyncpg://"
_PG_PREFIXES = (_ASYNC_PG, _SYNC_PG, "postgresql://", "postgres://")
# Seconds to wait for a PostgreSQL connection: a dead host must fail a batch fast, so records spool.
PG_CONNECT_TIMEOUT_S = 5
# Serializes concurrent upgrades of one PostgreSQL database (an arbitrary, fixed advisory-lock key).
_PG_MIGRATION_LOCK = 0x53574954
# busy_timeout first, so the pragmas after it wait for a lock instead of failing at once
SQLITE_PRAGMAS = ("PRAGMA busy_timeout=5000", "PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")


# The database is unreachable or unusable as a whole (rather than refusing a statement).
_DB_DOWN = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout, OSError)
# SQLSTATE classes meaning the same on PostgreSQL (asyncpg's surface as a bare DBAPIError): connection
# exception, insufficient resources, operator intervention (shutdown, starting up), system error.
_DOWN_SQLSTATE_CLASSES = frozenset({"08", "53", "57", "58"})


def is_db_down(exc: BaseException) -> bool:
    """True when `exc` says the database is unreachable, not that it refused these rows: retry later."""
    if isinstance(exc, _DB_DOWN):
        return True
    if isinstance(exc, DBAPIError):
        state = getattr(exc.orig, "sqlstate", None) or ""
        return exc.connection_invalidated or state[:2] in _DOWN_SQLSTATE_CLASSES
    return False


@dataclass(frozen=True, slots=True)
class StoreUrls:
    """The same database as seen by the sync (CLI, migrations) and async (server) drivers."""

    sync_url: str
    async_url: str
    data_dir: Path

    @property
    def is_sqlite(self) -> bool:
        """True for SQLite, False for PostgreSQL (the only two backends)."""
        return self.sync_url.startswith("sqlite")

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
        for prefix in _PG_PREFIXES:
            if database_url.startswith(prefix):
                rest = database_url[len(prefix) :]
                return cls(_SYNC_PG + rest, _ASYNC_PG + rest, data_dir)
        scheme = database_url.partition(":")[0]
        raise ValueError(
            f"database_url scheme '{scheme}' is not supported; use a sqlite:/// or postgresql:// URL "
            "or leave database_url unset for a SQLite file in data_dir"
        )


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def sync_engine(urls: StoreUrls) -> Engine:
    """The CLI's engine: pysqlite with the pragmas, or psycopg 3."""
    json_args: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
    if not urls.is_sqlite:
        connect = {"connect_timeout": PG_CONNECT_TIMEOUT_S}
        return create_engine(urls.sync_url, pool_pre_ping=True, connect_args=connect, **json_args)
    engine = create_engine(urls.sync_url, **json_args)
    event.listen(engine, "connect", _set_sqlite_pragmas)
    return engine


def async_engine(urls: StoreUrls) -> AsyncEngine:
    """The server's engine: aiosqlite with the pragmas, or asyncpg."""
    json_args: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
    if not urls.is_sqlite:
        connect = {"timeout": PG_CONNECT_TIMEOUT_S}
        return create_async_engine(urls.async_url, pool_pre_ping=True, connect_args=connect, **json_args)
    engine = create_async_engine(urls.async_url, **json_args)
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


def sqlite_file(url: str | URL) -> Path | None:
    """The file a SQLite URL names; None for an in-memory or `file:` URI database."""
    database = make_url(url).database
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
    (pysqlite would otherwise run the DDL in autocommit) that no other writer can interleave with.

    PostgreSQL runs DDL in transactions natively; `_upgrade` takes an advisory lock there instead.
    """
    if not urls.is_sqlite:
        return create_engine(urls.sync_url, connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S})
    engine = create_engine(urls.sync_url, connect_args={"isolation_level": None})
    event.listen(engine, "connect", _set_sqlite_pragmas)
    event.listen(engine, "begin", _begin_immediate)
    return engine


def migrate(urls: StoreUrls) -> None:
    """Upgrade the database to the newest revision; a no-op (one version read) when it is current.

    Upgrades of one SQLite file are serialized by a lock file beside it: concurrent first opens of a fresh
    file can otherwise fail with "database is locked" despite busy_timeout (seen under load in tests).
    On PostgreSQL a transaction-scoped advisory lock does the same across processes and hosts.
    """
    ensure_data_dir(urls.data_dir)
    path = sqlite_file(urls.sync_url) if urls.is_sqlite else None
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
            if not urls.is_sqlite:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
            if MigrationContext.configure(conn).get_current_revision() == head:
                return
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        engine.dispose()
