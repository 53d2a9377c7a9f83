"""index on posture_latest.received_at for the stale-posture sweep

The sweep (``mdm_core.policy.staleness``) asks for the devices whose latest posture was
received before a cutoff, oldest first, in pages: one range query on this index instead of a
scan of ``posture_latest``.

Revision ID: 0009_stale_sweep
Revises: 0008_sso_sessions
Create Date: 2026-12-01 20:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_stale_sweep"
down_revision = "0008_ssf"
branch_labels = None
depends_on = None

_INDEX = "ix_posture_latest_received_at"


def _has_index() -> bool:
    return any(i["name"] == _INDEX for i in sa.inspect(op.get_bind()).get_indexes("posture_latest"))


def upgrade() -> None:
    if not _has_index():
        op.create_index(_INDEX, "posture_latest", ["received_at"], unique=False)


def downgrade() -> None:
    if _has_index():
        op.drop_index(_INDEX, table_name="posture_latest")
