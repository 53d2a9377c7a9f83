"""read model versions: certificates bump their device's version

The login proof's device identity (public key, current certificate's validity and
revocation) is served from the read model under ``device:<id>``; a certificate revoked
without a write to its device row must bump that version too.

Revision ID: 0007_perf_decision_certs
Revises: 0006_readmodel
Create Date: 2026-12-01 16:00:00
"""

from __future__ import annotations

from alembic import op

from mdm_core.storage.sql.version_triggers import (
    CERTIFICATE_WATCHES,
    create_statements,
    drop_statements,
)

revision = "0007_perf_decision_certs"
down_revision = "0006_readmodel"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in create_statements(dialect, CERTIFICATE_WATCHES):
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in drop_statements(dialect, CERTIFICATE_WATCHES):
        op.execute(statement)
