"""directory sources: entry keys, sync cursors, leases (LDAP sync)

Revision ID: 0006_ldap
Revises: 0006_frontends
Create Date: 2026-12-01 12:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_ldap"
down_revision = "0006_frontends"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "directory_source_entries",
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("entry_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("entry_key", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("source", "entry_id", name=op.f("pk_directory_source_entries")),
    )
    op.create_table(
        "directory_sync_state",
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("cursor", sa.String(length=64), nullable=True),
        sa.Column("last_full_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_directory_sync_state")),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )


def downgrade() -> None:
    op.drop_table("leases")
    op.drop_table("directory_sync_state")
    op.drop_table("directory_source_entries")
