"""An index on lower(directory_users.email) (the HR webhooks' case-insensitive match)

Revision ID: 0014_email_lower_index
Revises: 0013_hr_deliveries
Create Date: 2026-12-02 08:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_email_lower_index"
down_revision = "0013_hr_deliveries"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_directory_users_email_lower", "directory_users", [sa.text("lower(email)")])


def downgrade() -> None:
    op.drop_index("ix_directory_users_email_lower", table_name="directory_users")
