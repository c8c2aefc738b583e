"""A gateway of a test's own config served on the test's event loop, and the log rows a gateway wrote."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from switchpoint.app import build_app
from switchpoint.config import Config


@asynccontextmanager
async def served(config: Config) -> AsyncIterator[tuple[str, web.Application]]:
    """(origin, app) of `config` served on 127.0.0.1 at a free port. Leaving drains the log writer: every
    record is in the database after it."""
    app = build_app(config)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    try:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}", app
    finally:
        await runner.cleanup()


def log_rows(data_dir: Path, where: str = "1=1", params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """The `logs` rows of the SQLite store in `data_dir` that match `where`."""
    con = sqlite3.connect(data_dir / "switchpoint.db")
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(f"SELECT * FROM logs WHERE {where}", params)]
    finally:
        con.close()
