"""identity links: (issuer, subject) of outside identities -> directory users

Revision ID: 0005
Revises: 0001
Create Date: 2026-12-01 09:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0002_enroll_limits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_links",
        sa.Column("issuer", sa.String(length=512), nullable=False),
        sa.Column("subject", sa.String(length=256), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("issuer", "subject", name=op.f("pk_identity_links")),
        sa.UniqueConstraint("issuer", "user_id", name="uq_identity_links_issuer_user"),
    )
    with op.batch_alter_table("identity_links", schema=None) as batch_op:
        batch_op.create_index("ix_identity_links_user_id", ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("identity_links", schema=None) as batch_op:
        batch_op.drop_index("ix_identity_links_user_id")
    op.drop_table("identity_links")
