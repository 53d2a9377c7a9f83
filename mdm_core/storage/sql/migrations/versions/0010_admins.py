"""named admins and their hashed API tokens (posture_gateway.admin)

Revision ID: 0010_admins
Revises: 0009_stale_sweep
Create Date: 2026-12-01 22:30:00
"""

from __future__ import annotations

revision = "0010_admins"
down_revision = "0009_stale_sweep"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
