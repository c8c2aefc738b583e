"""Initial schema: gateway tokens, sealed provider keys, the credentials version row and call logs.

Revision ID: 0001_initial
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _credential_tables() -> None:
    op.create_table(
        "gateway_tokens",
        sa.Column("token_id", sa.String(), primary_key=True),
        sa.Column("gateway", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("secret_hash", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
    )
    op.create_table(
        "provider_keys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("gateway", sa.String(), nullable=False),
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("alias", sa.String(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("preview", sa.String(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("gateway", "provider", "alias", name="uq_provider_keys_slot"),
    )
    version = op.create_table(
        "state_version",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("credentials", sa.Integer(), nullable=False),
    )
    op.bulk_insert(version, [{"id": 1, "credentials": 0}])


def _logs_table() -> None:
    op.create_table(
        "logs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("gateway", sa.String(), nullable=False),
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("provider", sa.String(), nullable=True),
        sa.Column("model", sa.String(), nullable=True),
        sa.Column("method", sa.String(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("surface", sa.String(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("tokens_in", sa.Integer(), nullable=True),
        sa.Column("tokens_out", sa.Integer(), nullable=True),
        sa.Column("cost", sa.Float(), nullable=True),
        sa.Column("custom_cost", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("ttfb_ms", sa.Float(), nullable=True),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("metadata", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("request_body", sa.LargeBinary(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.Column("request_size", sa.Integer(), nullable=False),
        sa.Column("response_size", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("user_agent", sa.String(), nullable=True),
    )
    op.create_index("ix_logs_gateway_created_at", "logs", ["gateway", "created_at"])
    op.create_index("ix_logs_event_id", "logs", ["event_id"])
    op.create_index("ix_logs_created_at", "logs", ["created_at"])


def upgrade() -> None:
    _credential_tables()
    _logs_table()


def downgrade() -> None:
    for table in ("logs", "state_version", "provider_keys", "gateway_tokens"):
        op.drop_table(table)
