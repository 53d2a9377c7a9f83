"""HR webhook deliveries (replay and idempotency records)

Revision ID: 0013_hr_deliveries
Revises: 0012_offboarding
Create Date: 2026-12-01 22:30:00
"""

from __future__ import annotations

revision = "0013_hr_deliveries"
down_revision = "0012_offboarding"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
