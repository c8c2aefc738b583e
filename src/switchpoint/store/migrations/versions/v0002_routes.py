"""Dynamic routes: routes, their immutable versions, deployments, and the routes version row.

Revision ID: 0002_routes
Revises: 0001_initial
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_routes"
down_revision: str | None = "0001_initial"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "routes",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("gateway", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("modified_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("gateway", "name", name="uq_routes_gateway_name"),
    )
    op.create_table(
        "route_versions",
        sa.Column("version_id", sa.String(32), primary_key=True),
        sa.Column("route_id", sa.String(32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("elements", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.UniqueConstraint("route_id", "number", name="uq_route_versions_number"),
    )
    op.create_table(
        "route_deployments",
        sa.Column("deployment_id", sa.String(32), primary_key=True),
        sa.Column("route_id", sa.String(32), nullable=False),
        sa.Column("version_id", sa.String(32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.UniqueConstraint("route_id", "number", name="uq_route_deployments_number"),
    )
    version = op.create_table(
        "routes_version",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("counter", sa.Integer(), nullable=False),
    )
    op.bulk_insert(version, [{"id": 1, "counter": 0}])


def downgrade() -> None:
    for table in ("routes_version", "route_deployments", "route_versions", "routes"):
        op.drop_table(table)
