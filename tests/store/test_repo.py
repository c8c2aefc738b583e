"""Credential rows (tokens hashed, keys sealed, each change bumping the version) and the recent-logs read."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from switchpoint.store import repo
from switchpoint.store.secrets import Sealer, SealError
from switchpoint.store.tables import logs, provider_keys, state_version

SECRET_KEY = "sk-proj-PLAINTEXTSECRET-0123456789abcd"


def version(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(state_version.c.credentials)) or 0)


def test_tokens_insert_revoke_list_bump_version(engine: Engine) -> None:
    repo.insert_token(engine, "aaaaaaaaaaaa", "default", "ci", b"h" * 32)
    repo.insert_token(engine, "bbbbbbbbbbbb", "prod", None, b"i" * 32)
    assert version(engine) == 2
    listed = repo.list_tokens(engine, None)
    assert [(t.token_id, t.gateway, t.name, t.revoked_at) for t in listed] == [
        ("aaaaaaaaaaaa", "default", "ci", None),
        ("bbbbbbbbbbbb", "prod", None, None),
    ]
    assert not hasattr(listed[0], "secret_hash")
    assert [t.token_id for t in repo.list_tokens(engine, "prod")] == ["bbbbbbbbbbbb"]

    assert repo.revoke_token(engine, "aaaaaaaaaaaa") is True
    assert version(engine) == 3
    assert repo.revoke_token(engine, "aaaaaaaaaaaa") is False
    assert repo.revoke_token(engine, "nonexistent0") is False
    assert version(engine) == 3
    assert repo.list_tokens(engine, "default")[0].revoked_at is not None


def test_keys_are_sealed_at_rest(engine: Engine, sealer: Sealer, data_dir: Path) -> None:
    repo.set_key(engine, sealer, "default", "openai", "default", SECRET_KEY)
    with engine.connect() as conn:
        row = conn.execute(select(provider_keys)).one()
    raw = repr(tuple(row)).encode() + bytes(row.sealed)
    assert SECRET_KEY.encode() not in raw and b"PLAINTEXTSECRET" not in raw
    assert row.preview == "…abcd"
    engine.dispose()  # let SQLite checkpoint so the main file holds everything
    for path in data_dir.iterdir():
        assert b"PLAINTEXTSECRET" not in path.read_bytes(), path


def test_set_key_upserts_and_bumps(engine: Engine, sealer: Sealer) -> None:
    repo.set_key(engine, sealer, "default", "openai", "default", "sk-first-1111")
    repo.set_key(engine, sealer, "default", "openai", "default", "sk-second-2222")
    repo.set_key(engine, sealer, "default", "openai", "backup", "sk-third-3333")
    assert version(engine) == 3
    listed = repo.list_keys(engine, None)
    assert [(k.provider, k.alias, k.preview) for k in listed] == [
        ("openai", "backup", "…3333"),
        ("openai", "default", "…2222"),
    ]
    assert listed[1].updated_at >= listed[1].created_at
    assert repo.list_keys(engine, "other") == []


def test_short_keys_get_no_preview(engine: Engine, sealer: Sealer) -> None:
    repo.set_key(engine, sealer, "default", "x", "default", "abc1234")
    assert repo.list_keys(engine, "default")[0].preview == "…"


def test_delete_key(engine: Engine, sealer: Sealer) -> None:
    repo.set_key(engine, sealer, "default", "openai", "default", SECRET_KEY)
    assert repo.delete_key(engine, "default", "openai", "default") is True
    assert repo.delete_key(engine, "default", "openai", "default") is False
    assert version(engine) == 2
    assert repo.list_keys(engine, None) == []


async def test_load_credentials(engine: Engine, aengine: AsyncEngine, sealer: Sealer) -> None:
    repo.insert_token(engine, "aaaaaaaaaaaa", "default", None, b"h" * 32)
    repo.insert_token(engine, "bbbbbbbbbbbb", "default", None, b"i" * 32)
    repo.revoke_token(engine, "bbbbbbbbbbbb")
    repo.set_key(engine, sealer, "default", "anthropic", "default", SECRET_KEY)
    rows = await repo.load_credentials(aengine, sealer)
    assert rows.version == 4 == await repo.credentials_version(aengine)
    assert rows.tokens == [("aaaaaaaaaaaa", "default", b"h" * 32)]
    assert rows.keys == [("default", "anthropic", "default", SECRET_KEY)]


async def test_load_credentials_with_wrong_master_key(engine: Engine, aengine: AsyncEngine, sealer: Sealer) -> None:
    repo.set_key(engine, sealer, "default", "openai", "default", SECRET_KEY)
    with pytest.raises(SealError, match="default/openai/default"):
        await repo.load_credentials(aengine, Sealer(b"\x01" * 32))


async def test_moved_sealed_row_does_not_open(engine: Engine, aengine: AsyncEngine, sealer: Sealer) -> None:
    repo.set_key(engine, sealer, "default", "openai", "default", SECRET_KEY)
    with engine.begin() as conn:
        conn.execute(update(provider_keys).values(gateway="prod"))
    with pytest.raises(SealError, match="prod/openai/default"):
        await repo.load_credentials(aengine, sealer)


def test_recent_logs(engine: Engine, make_record: Callable[..., dict[str, Any]]) -> None:
    records = [make_record(i, gateway="prod" if i % 4 == 0 else "default") for i in range(10)]
    with engine.begin() as conn:
        conn.execute(insert(logs), records)
    newest = repo.recent_logs(engine, 3)
    assert [r["id"] for r in newest] == [records[i]["id"] for i in (7, 8, 9)]
    assert "request_body" not in newest[0] and "response_body" not in newest[0]
    assert newest[0]["metadata"] == records[7]["metadata"] and newest[0]["cached"] is False
    assert [r["gateway"] for r in repo.recent_logs(engine, 10, gateway="prod")] == ["prod"] * 3
    after = repo.recent_logs(engine, 100, after_created_at=records[7]["created_at"])
    assert [r["id"] for r in after] == [records[8]["id"], records[9]["id"]]
