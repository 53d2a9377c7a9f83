"""offboarding jobs, their devices, and the login/enrollment block

Revision ID: 0012_offboarding
Revises: 0011_wipe_requests
Create Date: 2026-12-01 22:30:00
"""

from __future__ import annotations

revision = "0012_offboarding"
down_revision = "0011_wipe_requests"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
