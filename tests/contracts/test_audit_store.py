"""Contract: AuditStore on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_record_and_recent_newest_first(database: Database) -> None:
    storage = SqlStorage(database)
    with storage.unit_of_work() as uow:
        assert uow.audit.recent("d1") == []
        for i in range(5):
            uow.audit.record(
                "admin:root", "device.enroll", "d1", "ok", {"i": i}, at=NOW + timedelta(i)
            )
        uow.audit.record("system", "other", "d2", "ok", {})
    with storage.unit_of_work() as uow:
        recent = uow.audit.recent("d1", limit=3)
    assert [e.detail["i"] for e in recent] == [4, 3, 2]
    assert recent[0].at == NOW + timedelta(4) and recent[0].actor == "admin:root"


def test_overlong_fields_are_truncated(database: Database) -> None:
    storage = SqlStorage(database)
    with storage.unit_of_work() as uow:
        uow.audit.record("a" * 500, "b" * 500, "s", "c" * 500, {"k": "v"})
    with storage.unit_of_work() as uow:
        (entry,) = uow.audit.recent("s")
    assert (len(entry.actor), len(entry.action), len(entry.outcome)) == (128, 64, 32)
