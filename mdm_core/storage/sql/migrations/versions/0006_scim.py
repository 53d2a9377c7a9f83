"""scim resources: the SCIM 2.0 view (document, version, meta times) of mirror users and groups

Revision ID: 0006_scim
Revises: 0006_ldap
Create Date: 2026-12-01 12:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_scim"
down_revision = "0006_ldap"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scim_resources",
        sa.Column("resource_type", sa.String(length=16), nullable=False),
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("name_key", sa.String(length=256), nullable=False),
        sa.Column("external_id", sa.String(length=256), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_modified", sa.DateTime(timezone=True), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("resource_type", "id", name=op.f("pk_scim_resources")),
        sa.UniqueConstraint("resource_type", "name_key", name="uq_scim_resources_type_name"),
    )
    with op.batch_alter_table("scim_resources", schema=None) as batch_op:
        batch_op.create_index("ix_scim_resources_client", ["resource_type", "client"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("scim_resources", schema=None) as batch_op:
        batch_op.drop_index("ix_scim_resources_client")
    op.drop_table("scim_resources")
