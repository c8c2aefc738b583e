"""Dynamic routes in the call log: `route` ("name@version") and `route_path` (the element ids walked, ">"-joined).

Revision ID: 0004_log_routes
Revises: 0003_logs_indexes

Both are nullable, so adding them rewrites no rows on either backend; calls that take no route leave them NULL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_log_routes"
down_revision: str | None = "0003_logs_indexes"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("logs", sa.Column("route", sa.String(), nullable=True))
    op.add_column("logs", sa.Column("route_path", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("logs") as batch:
        batch.drop_column("route_path")
        batch.drop_column("route")
