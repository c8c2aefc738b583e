"""Reads and writes of credential rows (sync for the CLI, async for the server) and the recent-logs read.

Every token or key change bumps `state_version.credentials` in the same transaction, so a running gateway
notices it by polling one row and reloads the snapshot with `load_credentials`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from switchpoint.store.secrets import Sealer, slot_aad
from switchpoint.store.tables import (
    BINARY_LOG_COLUMNS,
    LOG_COLUMNS,
    gateway_tokens,
    logs,
    provider_keys,
    state_version,
)

_PREVIEW_MIN_LEN = 8  # shorter keys get no preview: four characters would be half the secret


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: str
    gateway: str
    name: str | None
    created_at: float
    revoked_at: float | None


@dataclass(frozen=True, slots=True)
class KeyInfo:
    gateway: str
    provider: str
    alias: str
    preview: str
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class CredentialRows:
    """Everything the hot path needs, read at `version`: live tokens and decrypted provider keys."""

    version: int
    tokens: list[tuple[str, str, bytes]]  # (token_id, gateway, secret_hash), revoked ones left out
    keys: list[tuple[str, str, str, str]]  # (gateway, provider, alias, plaintext key)


def key_preview(key: str) -> str:
    return f"…{key[-4:]}" if len(key) >= _PREVIEW_MIN_LEN else "…"


def _bump(conn: Connection) -> None:
    bumped = conn.execute(
        update(state_version).where(state_version.c.id == 1).values(credentials=state_version.c.credentials + 1)
    )
    if bumped.rowcount == 0:
        conn.execute(insert(state_version).values(id=1, credentials=1))


def insert_token(engine: Engine, token_id: str, gateway: str, name: str | None, secret_hash: bytes) -> None:
    row = {"token_id": token_id, "gateway": gateway, "name": name, "secret_hash": secret_hash}
    with engine.begin() as conn:
        conn.execute(insert(gateway_tokens).values(**row, created_at=time.time(), revoked_at=None))
        _bump(conn)


def revoke_token(engine: Engine, token_id: str) -> bool:
    """Mark a live token revoked; False when there is no such live token."""
    live = (gateway_tokens.c.token_id == token_id) & gateway_tokens.c.revoked_at.is_(None)
    with engine.begin() as conn:
        if conn.execute(update(gateway_tokens).where(live).values(revoked_at=time.time())).rowcount == 0:
            return False
        _bump(conn)
    return True


def list_tokens(engine: Engine, gateway: str | None = None) -> list[TokenInfo]:
    cols = [gateway_tokens.c[n] for n in ("token_id", "gateway", "name", "created_at", "revoked_at")]
    query = select(*cols).order_by(gateway_tokens.c.created_at)
    if gateway is not None:
        query = query.where(gateway_tokens.c.gateway == gateway)
    with engine.connect() as conn:
        return [TokenInfo(*row) for row in conn.execute(query)]


def _slot(gateway: str, provider: str, alias: str) -> Any:
    c = provider_keys.c
    return (c.gateway == gateway) & (c.provider == provider) & (c.alias == alias)


def set_key(engine: Engine, sealer: Sealer, gateway: str, provider: str, alias: str, key: str) -> None:
    """Store (or replace) the sealed key of one slot."""
    now = time.time()
    values = {"sealed": sealer.seal(key, slot_aad(gateway, provider, alias)), "preview": key_preview(key)}
    with engine.begin() as conn:
        updated = conn.execute(
            update(provider_keys).where(_slot(gateway, provider, alias)).values(**values, updated_at=now)
        )
        if updated.rowcount == 0:
            slot = {"gateway": gateway, "provider": provider, "alias": alias}
            conn.execute(insert(provider_keys).values(**slot, **values, created_at=now, updated_at=now))
        _bump(conn)


def delete_key(engine: Engine, gateway: str, provider: str, alias: str) -> bool:
    with engine.begin() as conn:
        if conn.execute(delete(provider_keys).where(_slot(gateway, provider, alias))).rowcount == 0:
            return False
        _bump(conn)
    return True


def list_keys(engine: Engine, gateway: str | None = None) -> list[KeyInfo]:
    c = provider_keys.c
    query = select(c.gateway, c.provider, c.alias, c.preview, c.created_at, c.updated_at)
    query = query.order_by(c.gateway, c.provider, c.alias)
    if gateway is not None:
        query = query.where(c.gateway == gateway)
    with engine.connect() as conn:
        return [KeyInfo(*row) for row in conn.execute(query)]


async def _read_version(conn: AsyncConnection) -> int:
    value = await conn.scalar(select(state_version.c.credentials).where(state_version.c.id == 1))
    return int(value or 0)


async def credentials_version(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return await _read_version(conn)


async def load_credentials(engine: AsyncEngine, sealer: Sealer) -> CredentialRows:
    """Read the version first, then the rows: a change in between only makes the next poll reload again."""
    live = gateway_tokens.c.revoked_at.is_(None)
    tok = select(gateway_tokens.c.token_id, gateway_tokens.c.gateway, gateway_tokens.c.secret_hash).where(live)
    c = provider_keys.c
    async with engine.connect() as conn:
        version = await _read_version(conn)
        tokens = [(r.token_id, r.gateway, bytes(r.secret_hash)) for r in await conn.execute(tok)]
        sealed = (await conn.execute(select(c.gateway, c.provider, c.alias, c.sealed))).all()
    keys = [(g, p, a, sealer.open(s, slot_aad(g, p, a))) for g, p, a, s in sealed]
    return CredentialRows(version, tokens, keys)


_LOG_FIELDS = [name for name in LOG_COLUMNS if name not in BINARY_LOG_COLUMNS]


def recent_logs(
    engine: Engine, limit: int, gateway: str | None = None, after_created_at: float | None = None
) -> list[dict[str, Any]]:
    """The newest `limit` log records (without bodies), oldest first, optionally only after a time."""
    query = select(*(logs.c[n] for n in _LOG_FIELDS))
    query = query.order_by(logs.c.created_at.desc(), logs.c.id.desc()).limit(limit)
    if gateway is not None:
        query = query.where(logs.c.gateway == gateway)
    if after_created_at is not None:
        query = query.where(logs.c.created_at > after_created_at)
    with engine.connect() as conn:
        rows = [dict(zip(_LOG_FIELDS, row, strict=True)) for row in conn.execute(query)]
    rows.reverse()
    return rows
