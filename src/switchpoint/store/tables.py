"""The store's schema as SQLAlchemy Core tables; `migrations/versions` must create exactly these."""

from __future__ import annotations

import sys

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
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

# Columns the analytics query reads; fixed-size or short, so index tuples stay far below btree's 2.7 KB limit.
ANALYTICS_COLUMNS = (
    "provider", "model", "status_code", "success", "cached",
    "tokens_in", "tokens_out", "cost", "duration_ms", "ttfb_ms",
)  # fmt: skip

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
    # jsonb on PostgreSQL (0003), so metadata filters use a GIN index; JSON text on SQLite.
    Column("metadata", JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql"), nullable=True),
    Column("request_body", LargeBinary, nullable=True),
    Column("response_body", LargeBinary, nullable=True),
    Column("request_size", Integer, nullable=False),
    Column("response_size", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("user_agent", String, nullable=True),
    Column("feedback", Integer, nullable=True),  # -1 thumbs down, 1 thumbs up (PATCH .../logs/{id}); 0003
    Column("score", Float, nullable=True),  # 0..100, set by PATCH; 0003
    Column("route", String, nullable=True),  # dynamic route "name@version"; 0004
    Column("route_path", String, nullable=True),  # element ids walked, joined by ">"; 0004
    # On PostgreSQL (0003) it also carries what analytics reads, so analytics is an index-only scan.
    Index("ix_logs_gateway_created_at", "gateway", "created_at", postgresql_include=list(ANALYTICS_COLUMNS)),
    # On SQLite (0005) only the event ids a client chose; the others equal `id` (see logs._event_id).
    Index("ix_logs_event_id", "event_id", sqlite_where=text("event_id <> id")),
    # `logs tail` without --gateway orders by time; without this it sorts the whole table.
    Index("ix_logs_created_at", "created_at"),
    # 0003: the logs API's common filters stay index range scans at 10 million rows (PostgreSQL only since
    # 0005: on SQLite each index costs every logged call a B-tree insert on the worker's core).
    Index("ix_logs_gateway_model_created_at", "gateway", "model", "created_at").ddl_if(dialect="postgresql"),
    Index("ix_logs_gateway_provider_created_at", "gateway", "provider", "created_at").ddl_if(dialect="postgresql"),
    Index(
        "ix_logs_gateway_failed_created_at",
        "gateway",
        "created_at",
        postgresql_where=text("NOT success"),
        sqlite_where=text("NOT success"),
    ),
    # PostgreSQL also has ix_logs_metadata (GIN, jsonb_path_ops) for metadata filters, made by 0003 alone:
    # Alembic's comparison ignores `ddl_if`, so a PostgreSQL-only index cannot be declared here.
)

# Declared above for PostgreSQL alone; Alembic's comparison ignores `ddl_if`, so on SQLite it reports them.
POSTGRESQL_ONLY_INDEXES = ("ix_logs_gateway_model_created_at", "ix_logs_gateway_provider_created_at")

# Plain `str` names (SQLAlchemy's are a str subclass, which orjson refuses as dict keys), interned: a log
# record's keys are literals in the code, so a lookup by these names matches by identity, not by comparing text.
LOG_COLUMNS: tuple[str, ...] = tuple(sys.intern(str(c.name)) for c in logs.columns)
BINARY_LOG_COLUMNS: frozenset[str] = frozenset(str(c.name) for c in logs.columns if isinstance(c.type, LargeBinary))

# -- dynamic routes (migration 0002_routes) ----------------------------------------------------------------

# A route is a name on a gateway; its versions are immutable element lists; a deployment makes one live.
routes = Table(
    "routes",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("gateway", String, nullable=False),
    Column("name", String, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("modified_at", Float, nullable=False),
    UniqueConstraint("gateway", "name", name="uq_routes_gateway_name"),
)

route_versions = Table(
    "route_versions",
    metadata,
    Column("version_id", String(32), primary_key=True),
    Column("route_id", String(32), nullable=False),
    Column("number", Integer, nullable=False),  # 1, 2, ... within the route
    Column("elements", JSON, nullable=False),  # normalized (API spelling) element list
    Column("created_at", Float, nullable=False),
    Column("comment", Text, nullable=True),
    UniqueConstraint("route_id", "number", name="uq_route_versions_number"),
)

route_deployments = Table(
    "route_deployments",
    metadata,
    Column("deployment_id", String(32), primary_key=True),
    Column("route_id", String(32), nullable=False),
    Column("version_id", String(32), nullable=False),
    Column("number", Integer, nullable=False),  # the newest deployment of a route is its live version
    Column("created_at", Float, nullable=False),
    Column("comment", Text, nullable=True),
    UniqueConstraint("route_id", "number", name="uq_route_deployments_number"),
)

# One row (id=1) bumped in the same transaction as every route change; gateways poll it.
routes_version = Table(
    "routes_version",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("counter", Integer, nullable=False),
)
