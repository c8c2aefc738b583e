"""SQLite keeps only the log indexes its queries need: the per-model and per-provider ones go, and the
event id index holds only event ids a client chose (the default event id is the log id, found by the key).

Revision ID: 0005_sqlite_lean_log_indexes
Revises: 0004_log_routes

Every index costs each logged call a B-tree insert in the writer thread, which shares the worker's core on
SQLite. A model or provider filter on SQLite is served by (gateway, created_at), walked newest first until
a page is full; PostgreSQL, meant for tens of millions of records, keeps both. PostgreSQL is unchanged.
`store.logs` looks an event id up as (event_id = X AND event_id <> id) OR (id = X AND event_id = id) there.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_sqlite_lean_log_indexes"
down_revision: str | None = "0004_log_routes"
branch_labels: str | None = None
depends_on: str | None = None

# Frozen copy of tables.POSTGRESQL_ONLY_INDEXES as of this revision.
_DROPPED: list[tuple[str, list[str]]] = [
    ("ix_logs_gateway_model_created_at", ["gateway", "model", "created_at"]),
    ("ix_logs_gateway_provider_created_at", ["gateway", "provider", "created_at"]),
]


_EVENT_ID = "ix_logs_event_id"
_CHOSEN = sa.text("event_id <> id")


def _is_sqlite() -> bool:
    return bool(op.get_bind().dialect.name == "sqlite")


def upgrade() -> None:
    if _is_sqlite():
        for name, _columns in _DROPPED:
            op.drop_index(name, table_name="logs")
        op.drop_index(_EVENT_ID, table_name="logs")
        op.create_index(_EVENT_ID, "logs", ["event_id"], sqlite_where=_CHOSEN)


def downgrade() -> None:
    if _is_sqlite():
        for name, columns in _DROPPED:
            op.create_index(name, "logs", columns)
        op.drop_index(_EVENT_ID, table_name="logs")
        op.create_index(_EVENT_ID, "logs", ["event_id"])
