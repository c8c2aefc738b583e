"""PostgreSQL for tests: the shared server on 127.0.0.1:5432, a fresh database per test module, and a private
server (initdb + pg_ctl on its own port and data directory) that a test may stop and start at will.

Without a reachable server the PostgreSQL tests are skipped, except in CI (`CI=true`), where they fail.
Import the fixtures into a test module (or conftest) to use them: `store_urls` is parametrized over both
backends, so every test using it runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from switchpoint.store import db

PG_HOST = os.environ.get("SWITCHPOINT_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("SWITCHPOINT_TEST_PG_PORT", "5432"))
PG_ADMIN_DB = os.environ.get("SWITCHPOINT_TEST_PG_DB", "test")
PG_USER = os.environ.get("SWITCHPOINT_TEST_PG_USER", "postgres")
PG_BIN = Path(os.environ.get("SWITCHPOINT_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
BACKENDS = ["sqlite", "postgresql"]


def _conninfo(dbname: str, port: int = PG_PORT) -> str:
    return f"host={PG_HOST} port={port} user={PG_USER} dbname={dbname} connect_timeout=3"


def pg_url(dbname: str, port: int = PG_PORT) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{port}/{dbname}"


def require_postgres() -> None:
    """Skip (or, in CI, fail) unless the shared server answers."""
    try:
        psycopg.connect(_conninfo(PG_ADMIN_DB)).close()
    except psycopg.Error as exc:
        message = f"PostgreSQL at {PG_HOST}:{PG_PORT} (database {PG_ADMIN_DB}) is not reachable: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + "; CI requires it")
        pytest.skip(message)


def _admin(sql: str) -> None:
    with psycopg.connect(_conninfo(PG_ADMIN_DB), autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    """A fresh, empty database on the shared server for this module; dropped afterwards. Yields its URL."""
    require_postgres()
    name = f"sp_test_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield pg_url(name)
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", params=BACKENDS)
def store_urls(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> db.StoreUrls:
    """A migrated store on each backend (module-wide; `clean_logs` empties the logs table per test)."""
    data_dir = tmp_path_factory.mktemp("store")
    url = None if request.param == "sqlite" else request.getfixturevalue("pg_database")
    urls = db.StoreUrls.resolve(url, data_dir)
    db.migrate(urls)
    return urls


async def clean(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM logs"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(*args: str) -> list[str]:
    """Run a PostgreSQL binary as the `postgres` OS user (the server refuses to run as root)."""
    if os.geteuid() != 0:
        return list(args)
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *args]
    return ["su", "postgres", "-c", " ".join(args)]


class PrivateServer:
    """A throwaway PostgreSQL server (own data directory and port) that tests may stop and restart."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "pgdata"
        self.port = free_port()
        self.log = root / "server.log"

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(_as_postgres(*args), check=True, capture_output=True, timeout=timeout)

    def init(self) -> PrivateServer:
        if not (PG_BIN / "initdb").exists():
            message = f"no initdb under {PG_BIN} for a private PostgreSQL server"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(message + "; CI requires it")
            pytest.skip(message)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", PG_USER, "--auth=trust", "-E", "UTF8")
        return self

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} -c fsync=off"
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self, name: str) -> str:
        deadline = time.monotonic() + 10
        while True:
            try:
                with psycopg.connect(_conninfo("postgres", self.port), autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
                return pg_url(name, self.port)
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


@pytest.fixture
def private_server() -> Iterator[PrivateServer]:
    """A started private server; stopped (immediately) and removed at teardown, whatever the test left.

    Its directory is a fresh one in the system temp dir, not pytest's: the `postgres` user must reach it,
    and pytest's base directory is private to the user running the tests.
    """
    server = PrivateServer(Path(tempfile.mkdtemp(prefix="sp-pgtest-")))
    try:
        server.init().start()
        yield server
    finally:
        try:
            server.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # never started, or already stopped by the test
        shutil.rmtree(server.root, ignore_errors=True)
