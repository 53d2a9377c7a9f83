"""offboarding jobs, their devices, and the login/enrollment block

``offboarding_jobs`` (one durable job per user and trigger), ``offboarding_devices`` (per
job, what was done to each device) and ``user_blocks`` (users whose logins and enrollment
offboarding blocked, until an admin reinstates them). Writes to ``user_blocks`` bump the read
model's ``directory`` version (a trigger, as for ``directory_users``), so a cached decision
sees a block in the transaction that set it.

Revision ID: 0012_offboarding
Revises: 0011_wipe_requests
Create Date: 2026-12-01 22:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mdm_core.storage.sql.version_triggers import (
    VersionWatch,
    create_statements,
    drop_statements,
)

revision = "0012_offboarding"
down_revision = "0011_wipe_requests"
branch_labels = None
depends_on = None

#: ``user_blocks`` is part of what a decision reads about a user (the ``directory`` key).
WATCHES = (VersionWatch("user_blocks", "directory"),)


def upgrade() -> None:
    op.create_table(
        "offboarding_jobs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("open_user", sa.String(length=128), nullable=True),
        sa.Column("username", sa.String(length=256), nullable=True),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("source_ref", sa.String(length=256), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offboarding_jobs")),
        sa.UniqueConstraint("open_user", name=op.f("uq_offboarding_jobs_open_user")),
        sa.UniqueConstraint("trigger", "source_ref", name="uq_offboarding_jobs_trigger_source_ref"),
    )
    with op.batch_alter_table("offboarding_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_offboarding_jobs_due", ["status", "effective_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_offboarding_jobs_user_id"), ["user_id"], unique=False)
    op.create_table(
        "offboarding_devices",
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("ownership", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=24), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("command_id", sa.String(length=64), nullable=True),
        sa.Column("lock_command_id", sa.String(length=64), nullable=True),
        sa.Column("wipe_request_id", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["offboarding_jobs.id"],
            name=op.f("fk_offboarding_devices_job_id_offboarding_jobs"),
        ),
        sa.PrimaryKeyConstraint("job_id", "device_id", name=op.f("pk_offboarding_devices")),
    )
    op.create_table(
        "user_blocks",
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("blocked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_blocks")),
    )
    dialect = op.get_bind().dialect.name
    for statement in create_statements(dialect, WATCHES):
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in drop_statements(dialect, WATCHES):
        op.execute(statement)
    op.drop_table("user_blocks")
    op.drop_table("offboarding_devices")
    with op.batch_alter_table("offboarding_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_offboarding_jobs_user_id"))
        batch_op.drop_index("ix_offboarding_jobs_due")
    op.drop_table("offboarding_jobs")
