"""read model versions: one version row per cached entity, bumped by triggers

Revision ID: 0006_readmodel
Revises: 0006_convergence
Create Date: 2026-12-01 12:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mdm_core.storage.sql.version_triggers import (
    CORE_WATCHES,
    GATEWAY_WATCHES,
    create_statements,
    drop_statements,
)

revision = "0006_readmodel"
down_revision = "0006_convergence"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "read_model_versions",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_read_model_versions")),
    )
    dialect = op.get_bind().dialect.name
    for statement in create_statements(dialect, CORE_WATCHES + GATEWAY_WATCHES):
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in drop_statements(dialect, CORE_WATCHES + GATEWAY_WATCHES):
        op.execute(statement)
    op.drop_table("read_model_versions")
