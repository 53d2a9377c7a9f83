"""full-wipe requests and their approvals (two-person rule)

Revision ID: 0011_wipe_requests
Revises: 0010_admins
Create Date: 2026-12-01 22:30:00
"""

from __future__ import annotations

revision = "0011_wipe_requests"
down_revision = "0010_admins"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
