"""Logs API: feedback and score columns, indexes for its filters; on PostgreSQL also jsonb metadata with a GIN
index, a covering (gateway, created_at) index for analytics, and storage settings for a narrow heap.

Revision ID: 0003_logs_indexes
Revises: 0002_routes

The indexes are built with plain CREATE INDEX (not CONCURRENTLY): PostgreSQL support arrives in the same
release, so no PostgreSQL log table predates them, and on SQLite there is no concurrent build anyway.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003_logs_indexes"
down_revision: str | None = "0002_routes"
branch_labels: str | None = None
depends_on: str | None = None

_INDEXES: list[tuple[str, list[str]]] = [
    ("ix_logs_gateway_model_created_at", ["gateway", "model", "created_at"]),
    ("ix_logs_gateway_provider_created_at", ["gateway", "provider", "created_at"]),
]
_FAILED = "ix_logs_gateway_failed_created_at"
_BY_GATEWAY = "ix_logs_gateway_created_at"
# Frozen copy of tables.ANALYTICS_COLUMNS as of this revision (a migration must not change with tables.py).
_ANALYTICS_COLUMNS = [
    "provider", "model", "status_code", "success", "cached",
    "tokens_in", "tokens_out", "cost", "duration_ms", "ttfb_ms",
]  # fmt: skip
# A narrow heap: a row over 2 KB has its bodies compressed, then moved to TOAST, until it is under 512 bytes
# (the default shrinks it only to ~2 KB), so list and analytics scans read fewer pages. Not lower: at 128
# the small columns (metadata) get toasted too, and reading them costs more than the narrower row saves.
_TOAST_TARGET = 512


def _is_postgresql() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def upgrade() -> None:
    op.add_column("logs", sa.Column("feedback", sa.Integer(), nullable=True))
    op.add_column("logs", sa.Column("score", sa.Float(), nullable=True))
    for name, columns in _INDEXES:
        op.create_index(name, "logs", columns)
    failed = sa.text("NOT success")
    op.create_index(_FAILED, "logs", ["gateway", "created_at"], postgresql_where=failed, sqlite_where=failed)
    if _is_postgresql():
        op.alter_column(
            "logs",
            "metadata",
            type_=JSONB(none_as_null=True),
            existing_type=sa.JSON(none_as_null=True),
            postgresql_using="metadata::jsonb",
        )
        op.create_index(
            "ix_logs_metadata",
            "logs",
            ["metadata"],
            postgresql_using="gin",
            postgresql_ops={"metadata": "jsonb_path_ops"},
        )
        op.drop_index(_BY_GATEWAY, table_name="logs")
        op.create_index(_BY_GATEWAY, "logs", ["gateway", "created_at"], postgresql_include=_ANALYTICS_COLUMNS)
        # Index-only scans need the visibility map: have autovacuum set it after every 1% of growth, not 20%.
        op.execute(
            f"ALTER TABLE logs SET (toast_tuple_target = {_TOAST_TARGET}, autovacuum_vacuum_insert_scale_factor = 0.01)"
        )


def downgrade() -> None:
    if _is_postgresql():
        op.execute("ALTER TABLE logs RESET (toast_tuple_target, autovacuum_vacuum_insert_scale_factor)")
        op.drop_index(_BY_GATEWAY, table_name="logs")
        op.create_index(_BY_GATEWAY, "logs", ["gateway", "created_at"])
        op.drop_index("ix_logs_metadata", table_name="logs")
        op.alter_column(
            "logs",
            "metadata",
            type_=sa.JSON(none_as_null=True),
            existing_type=JSONB(none_as_null=True),
            postgresql_using="metadata::json",
        )
    op.drop_index(_FAILED, table_name="logs")
    for name, _columns in reversed(_INDEXES):
        op.drop_index(name, table_name="logs")
    with op.batch_alter_table("logs") as batch:
        batch.drop_column("score")
        batch.drop_column("feedback")
