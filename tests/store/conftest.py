"""Fixtures for store tests: a migrated SQLite data dir, sync and async engines, a sealer, log records."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from switchpoint.store import db
from switchpoint.store.secrets import Sealer


@pytest.fixture(autouse=True)
def _no_secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWITCHPOINT_SECRET", raising=False)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def urls(data_dir: Path) -> db.StoreUrls:
    store_urls = db.StoreUrls.resolve(None, data_dir)
    db.migrate(store_urls)
    return store_urls


@pytest.fixture
def engine(urls: db.StoreUrls) -> Iterator[Engine]:
    eng = db.sync_engine(urls)
    yield eng
    eng.dispose()


@pytest.fixture
async def aengine(urls: db.StoreUrls) -> AsyncIterator[AsyncEngine]:
    eng = db.async_engine(urls)
    yield eng
    await eng.dispose()


@pytest.fixture
def sealer() -> Sealer:
    return Sealer(bytes(range(32)))


RecordFactory = Callable[..., dict[str, Any]]


@pytest.fixture
def make_record() -> RecordFactory:
    return record


def record(i: int, **overrides: Any) -> dict[str, Any]:
    """A complete log record with every column set to a distinctive value."""
    record: dict[str, Any] = {
        "id": f"0190a6f2-{i:04x}-7000-8000-{i:012x}",
        "created_at": 1_750_000_000.0 + i,
        "gateway": "default",
        "account": "acct",
        "provider": "openai",
        "model": f"gpt-{i}",
        "method": "POST",
        "path": "/v1/chat/completions",
        "surface": "passthrough",
        "status_code": 200,
        "success": True,
        "cached": i % 2 == 0,
        "stream": i % 3 == 0,
        "attempts": 1,
        "step": None,
        "tokens_in": 10 + i,
        "tokens_out": 20 + i,
        "cost": 0.001 * i,
        "custom_cost": False,
        "duration_ms": 12.5,
        "ttfb_ms": 3.25,
        "event_id": f"evt-{i}",
        "metadata": {"user": f"u{i}", "n": i, "$b64": "not bytes"},
        "request_body": b'{"model":"x"}' + bytes([i % 256, 0, 255]),
        "response_body": bytes(range(256)),
        "request_size": 16,
        "response_size": 256,
        "error": None,
        "user_agent": "test/1.0",
        "feedback": None,
        "score": None,
        "route": f"support@v{i}",
        "route_path": "start>plan>m_fast",
    }
    record.update(overrides)
    return record
