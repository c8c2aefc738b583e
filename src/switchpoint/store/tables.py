"""The store's schema as SQLAlchemy Core tables; `migrations/versions` must create exactly these."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData()

gateway_tokens = Table(
    "gateway_tokens",
    metadata,
    Column("token_id", String, primary_key=True),
    Column("gateway", String, nullable=False),
    Column("name", String, nullable=True),
    Column("secret_hash", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
)

provider_keys = Table(
    "provider_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("gateway", String, nullable=False),
    Column("provider", String, nullable=False),
    Column("alias", String, nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    Column("preview", String, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("gateway", "provider", "alias", name="uq_provider_keys_slot"),
)

# One row (id=1) bumped in the same transaction as every token/key change; gateways poll it.
state_version = Table(
    "state_version",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("credentials", Integer, nullable=False),
)

logs = Table(
    "logs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("gateway", String, nullable=False),
    Column("account", String, nullable=False),
    Column("provider", String, nullable=True),
    Column("model", String, nullable=True),
    Column("method", String, nullable=False),
    Column("path", String, nullable=False),
    Column("surface", String, nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("success", Boolean, nullable=False),
    Column("cached", Boolean, nullable=False),
    Column("stream", Boolean, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("step", Integer, nullable=True),
    Column("tokens_in", Integer, nullable=True),
    Column("tokens_out", Integer, nullable=True),
    Column("cost", Float, nullable=True),
    Column("custom_cost", Boolean, nullable=False, default=False, server_default=false()),
    Column("duration_ms", Float, nullable=False),
    Column("ttfb_ms", Float, nullable=True),
    Column("event_id", String, nullable=False),
    Column("metadata", JSON(none_as_null=True), nullable=True),
    Column("request_body", LargeBinary, nullable=True),
    Column("response_body", LargeBinary, nullable=True),
    Column("request_size", Integer, nullable=False),
    Column("response_size", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("user_agent", String, nullable=True),
    Index("ix_logs_gateway_created_at", "gateway", "created_at"),
    Index("ix_logs_event_id", "event_id"),
    # `logs tail` without --gateway orders by time; without this it sorts the whole table.
    Index("ix_logs_created_at", "created_at"),
)

# Plain `str` names (SQLAlchemy's are a str subclass, which orjson refuses as dict keys).
LOG_COLUMNS: tuple[str, ...] = tuple(str(c.name) for c in logs.columns)
BINARY_LOG_COLUMNS: frozenset[str] = frozenset(str(c.name) for c in logs.columns if isinstance(c.type, LargeBinary))
