"""Parity through a PostgreSQL outage: every record submitted to the log writer is stored exactly once, with
its tokens and cost, although the server is stopped and started again while records keep flowing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from switchpoint.store import db
from switchpoint.store.logwriter import LogWriter
from switchpoint.store.tables import logs
from tests.support.postgres import PrivateServer, private_server

__all__ = ["private_server"]

N = 3000


def call_record(i: int) -> dict[str, Any]:
    """Records shaped like the gateway's: streamed (SSE body, first byte) or not, and one in seven failing."""
    stream, failed = i % 3 == 0, i % 7 == 0
    body = b'data: {"choices":[]}\n\ndata: [DONE]\n\n' if stream else b'{"id":"x","usage":{"total_tokens":3}}'
    return {
        "id": f"01900000-0000-7000-8000-{i:012x}",
        "created_at": 1_760_000_000.0 + i / 1000,
        "gateway": "default",
        "account": "acct",
        "provider": "openai" if i % 2 else "anthropic",
        "model": f"model-{i % 5}",
        "method": "POST",
        "path": "/v1/chat/completions",
        "surface": "compat",
        "status_code": 502 if failed else 200,
        "success": not failed,
        "cached": False,
        "stream": stream,
        "attempts": 2 if failed else 1,
        "step": None,
        "tokens_in": None if failed else 10 + i,
        "tokens_out": None if failed else 1 + i % 50,
        "cost": None if failed else round(0.000_001 * i, 9),
        "custom_cost": False,
        "duration_ms": 100.0 + i,
        "ttfb_ms": 20.0 + i % 10 if stream else None,
        "event_id": f"evt-{i}",
        "metadata": {"run": "parity", "i": i},
        "request_body": b'{"model":"x","stream":%s}' % (b"true" if stream else b"false"),
        "response_body": None if failed else body,
        "request_size": 30,
        "response_size": 0 if failed else len(body),
        "error": "upstream connection reset" if failed else None,
        "user_agent": "parity/1.0",
    }


async def _feed(writer: LogWriter, records: list[dict[str, Any]], chunk: int = 50) -> None:
    """Submit at a steady pace, as calls finishing would."""
    for start in range(0, len(records), chunk):
        for record in records[start : start + chunk]:
            writer.submit(record)
        await asyncio.sleep(0.01)


async def _until(cond: Callable[[], bool], within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_every_record_survives_a_postgres_restart(private_server: PrivateServer, tmp_path: Path) -> None:
    urls = db.StoreUrls.resolve(private_server.create_database("parity"), tmp_path)
    await asyncio.to_thread(db.migrate, urls)
    engine = db.async_engine(urls)
    writer = LogWriter(engine, tmp_path / "spool" / "logs.ndjson", batch_size=200, flush_interval=0.02)
    await writer.start()
    records = [call_record(i) for i in range(N)]
    try:
        await _feed(writer, records[:1000])
        await _until(lambda: writer.counters["written"] >= 500)
        stopping = asyncio.create_task(asyncio.to_thread(private_server.stop, "fast"))
        await _feed(writer, records[1000:2000])  # while the server shuts down and after
        await stopping
        await _feed(writer, records[2000:2500])  # the server is down: all of these spool
        starting = asyncio.create_task(asyncio.to_thread(private_server.start))
        await _feed(writer, records[2500:])
        await starting
        await writer.close(timeout=60)
    finally:
        await engine.dispose()
    counters = writer.counters
    assert counters["spooled"] > 0, "the outage never reached the writer"
    assert (counters["dropped"], counters["rejected"], counters["queue_depth"], counters["spool_bytes"]) == (0, 0, 0, 0)
    _assert_stored_exactly(urls, records)


def _assert_stored_exactly(urls: db.StoreUrls, records: list[dict[str, Any]]) -> None:
    engine = db.sync_engine(urls)
    try:
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(logs)) == N
            cols = (logs.c.id, logs.c.tokens_in, logs.c.tokens_out, logs.c.cost, logs.c.success, logs.c.ttfb_ms)
            stored = {row[0]: tuple(row[1:]) for row in conn.execute(select(*cols))}
    finally:
        engine.dispose()
    expected = {r["id"]: (r["tokens_in"], r["tokens_out"], r["cost"], r["success"], r["ttfb_ms"]) for r in records}
    assert stored == expected
    assert sum(r["tokens_in"] or 0 for r in records) == sum(v[0] or 0 for v in stored.values())
