"""named admins and their hashed API tokens (posture_gateway.admin)

The table is declared on the gateway's own ``MetaData`` in
``posture_gateway/admin/tables.py`` (the core does not know about gateway admins).

Revision ID: 0010_admins
Revises: 0009_stale_sweep
Create Date: 2026-12-01 22:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_admins"
down_revision = "0009_stale_sweep"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admins",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("token_id", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=160), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("token_issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_admins")),
        sa.UniqueConstraint("token_id", name=op.f("uq_admins_token_id")),
    )


def downgrade() -> None:
    op.drop_table("admins")
