"""SQLite keeps only the log indexes its queries need: the per-model and per-provider ones go.

Revision ID: 0005_sqlite_lean_log_indexes
Revises: 0004_log_routes

Every index costs each logged call a B-tree insert in the writer thread, which shares the worker's core on
SQLite. A model or provider filter on SQLite is served by (gateway, created_at), walked newest first until
a page is full; PostgreSQL, meant for tens of millions of records, keeps both. PostgreSQL is unchanged.
"""

from __future__ import annotations

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


def _is_sqlite() -> bool:
    return bool(op.get_bind().dialect.name == "sqlite")


def upgrade() -> None:
    if _is_sqlite():
        for name, _columns in _DROPPED:
            op.drop_index(name, table_name="logs")


def downgrade() -> None:
    if _is_sqlite():
        for name, columns in _DROPPED:
            op.create_index(name, "logs", columns)
