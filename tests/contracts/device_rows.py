"""Insert bare device rows for store contract tests (no CA, no keys: stores only need the FK)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert

from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.tables import devices


def add_device(
    database: Database,
    device_id: str,
    *,
    ownership: str = "corporate",
    platform: str = "linux",
    status: str = "active",
) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with database.transaction() as conn:
        conn.execute(
            insert(devices).values(
                id=device_id,
                user_id="u-" + device_id,
                platform=platform,
                ownership=ownership,
                status=status,
                enrollment_generation=1,
                enrolled_at=now,
                updated_at=now,
            )
        )
