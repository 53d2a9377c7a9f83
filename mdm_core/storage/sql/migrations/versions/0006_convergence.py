"""directory source claims: what each directory source last said about each user

Revision ID: 0006_convergence
Revises: 0006_scim
Create Date: 2026-12-01 12:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_convergence"
down_revision = "0006_scim"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "directory_source_claims",
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("claims", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "source", name=op.f("pk_directory_source_claims")),
    )
    with op.batch_alter_table("directory_source_claims", schema=None) as batch_op:
        batch_op.create_index("ix_directory_source_claims_source", ["source"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("directory_source_claims", schema=None) as batch_op:
        batch_op.drop_index("ix_directory_source_claims_source")
    op.drop_table("directory_source_claims")
