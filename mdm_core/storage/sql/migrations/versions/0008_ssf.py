"""signals transmitter: SSF streams, their subjects and the durable SET delivery queue

The tables are declared on the gateway's own ``MetaData`` in
``posture_gateway/signals/tables.py`` (the core does not know about Shared Signals); the core
writes ``ssf_deliveries`` rows only through the outbox listener the gateway registers.

Revision ID: 0008_ssf
Revises: 0007_perf_decision_certs
Create Date: 2026-12-01 19:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_ssf"
down_revision = "0007_perf_decision_certs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ssf_streams",
        sa.Column("stream_id", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("stream_id", name=op.f("pk_ssf_streams")),
    )
    with op.batch_alter_table("ssf_streams", schema=None) as batch_op:
        batch_op.create_index("ix_ssf_streams_client_id", ["client_id"], unique=False)
    op.create_table(
        "ssf_subjects",
        sa.Column("stream_id", sa.String(length=64), nullable=False),
        sa.Column("subject_key", sa.String(length=512), nullable=False),
        sa.Column("subject", sa.JSON(), nullable=False),
        sa.Column("included", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("stream_id", "subject_key", name=op.f("pk_ssf_subjects")),
    )
    op.create_table(
        "ssf_deliveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("stream_id", sa.String(length=64), nullable=False),
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("txn", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=160), nullable=False),
        sa.Column("claims", sa.JSON(), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ssf_deliveries")),
        sa.UniqueConstraint("jti", name=op.f("uq_ssf_deliveries_jti")),
    )
    with op.batch_alter_table("ssf_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ssf_deliveries_due", ["state", "next_attempt_at"], unique=False
        )
        batch_op.create_index("ix_ssf_deliveries_stream_id", ["stream_id"], unique=False)


def downgrade() -> None:
    op.drop_table("ssf_deliveries")
    op.drop_table("ssf_subjects")
    with op.batch_alter_table("ssf_streams", schema=None) as batch_op:
        batch_op.drop_index("ix_ssf_streams_client_id")
    op.drop_table("ssf_streams")
