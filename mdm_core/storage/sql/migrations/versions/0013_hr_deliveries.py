"""HR webhook deliveries (replay and idempotency records)

The table is declared on the gateway's own ``MetaData`` in ``posture_gateway/hr/tables.py``
(the core does not know about HR systems).

Revision ID: 0013_hr_deliveries
Revises: 0012_offboarding
Create Date: 2026-12-01 22:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_hr_deliveries"
down_revision = "0012_offboarding"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hr_deliveries",
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("delivery_key", sa.String(length=128), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("employee_ref", sa.String(length=400), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=True),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=True),
        sa.Column("source_ref", sa.String(length=255), nullable=True),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", "delivery_key", "seq", name=op.f("pk_hr_deliveries")),
    )
    with op.batch_alter_table("hr_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_hr_deliveries_outcome", ["outcome", "received_at"], unique=False)
        batch_op.create_index("ix_hr_deliveries_received", ["received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hr_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_hr_deliveries_received")
        batch_op.drop_index("ix_hr_deliveries_outcome")
    op.drop_table("hr_deliveries")
