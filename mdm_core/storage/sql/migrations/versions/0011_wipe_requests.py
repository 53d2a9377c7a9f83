"""full-wipe requests and their approvals (two-person rule)

One row per full-wipe request (``mdm_core.device.wipes``); ``open_device_id`` is unique, so a
device has at most one open request.

Revision ID: 0011_wipe_requests
Revises: 0010_admins
Create Date: 2026-12-01 22:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_wipe_requests"
down_revision = "0010_admins"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wipe_requests",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("approvals", sa.JSON(), nullable=False),
        sa.Column("command_id", sa.String(length=64), nullable=True),
        sa.Column("open_device_id", sa.String(length=64), nullable=True),
        sa.Column("closed_by", sa.String(length=128), nullable=True),
        sa.Column("close_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_wipe_requests_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wipe_requests")),
        sa.UniqueConstraint("open_device_id", name=op.f("uq_wipe_requests_open_device_id")),
    )
    with op.batch_alter_table("wipe_requests", schema=None) as batch_op:
        batch_op.create_index("ix_wipe_requests_device_id", ["device_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("wipe_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_wipe_requests_device_id")
    op.drop_table("wipe_requests")
