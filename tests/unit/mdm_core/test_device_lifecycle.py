"""Device status changes go through ``mdm_core.domain.device_lifecycle``, which revokes credentials.

- no module of ``mdm_core`` but the lifecycle calls ``devices.update_status`` (a new
  quarantine / retire / wipe path cannot forget the revocation);
- the statuses that end access revoke the device's credentials in the unit of work, with an
  audit entry; the others do not;
- a revoker that fails makes the status change fail with it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mdm_core.bus.events import EventType
from mdm_core.domain.device_lifecycle import (
    ACCESS_ENDING,
    change_status,
    end_device_access,
    end_user_access,
)
from mdm_core.domain.model import DeviceStatus
from mdm_core.storage.credentials import SESSIONS
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage
from tests.helpers.enrolled import enroll_device, make_core

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime.now(UTC)


def test_only_the_lifecycle_changes_a_device_status() -> None:
    callers = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "mdm_core").rglob("*.py")
        if re.search(r"\.devices\.update_status\(", path.read_text(encoding="utf-8"))
    ]
    assert callers == ["mdm_core/domain/device_lifecycle.py"]


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def revoke_for_device(self, device_id: str, *, reason: str, at: datetime) -> int:
        self.calls.append(("device", device_id, reason))
        return 3

    def revoke_for_user(self, user_id: str, *, reason: str, at: datetime) -> int:
        self.calls.append(("user", user_id, reason))
        return 2


@pytest.mark.parametrize("status", list(DeviceStatus))
def test_statuses_that_end_access_revoke_in_the_same_unit_of_work(
    sqlite_database: Database, tmp_path: Path, status: DeviceStatus
) -> None:
    core = make_core(sqlite_database, tmp_path)
    try:
        device = enroll_device(core, "alice")
        recorder = Recorder()
        core.storage.add_credential_revoker(lambda _conn: recorder)
        with core.storage.unit_of_work() as uow:
            updated = change_status(uow, device.device_id, status, reason="test", at=NOW)
        assert updated.status is status
        with core.storage.unit_of_work() as uow:
            audited = [
                e for e in uow.audit.recent(device.device_id) if e.action == "credentials.revoked"
            ]
        if status in ACCESS_ENDING:
            assert recorder.calls == [("device", device.device_id, f"device_{status.value}")]
            assert audited and audited[0].detail == {
                "reason": f"device_{status.value}",
                "count": 3,
            }
        else:
            assert recorder.calls == [] and audited == []
    finally:
        core.close()


def test_a_failing_revoker_fails_the_status_change(
    sqlite_database: Database, tmp_path: Path
) -> None:
    core = make_core(sqlite_database, tmp_path)
    try:
        device = enroll_device(core, "alice")

        class Failing(Recorder):
            def revoke_for_device(self, device_id: str, *, reason: str, at: datetime) -> int:
                raise RuntimeError("token table gone")

        core.storage.add_credential_revoker(lambda _conn: Failing())
        with pytest.raises(RuntimeError), core.storage.unit_of_work() as uow:
            change_status(uow, device.device_id, DeviceStatus.QUARANTINED, reason="t", at=NOW)
        with core.storage.unit_of_work() as uow:
            record = uow.devices.get(device.device_id)
        assert record is not None and record.status is DeviceStatus.ACTIVE
    finally:
        core.close()


def test_end_user_access_fans_out_to_every_revoker(sqlite_database: Database) -> None:
    storage = SqlStorage(sqlite_database)
    first, second = Recorder(), Recorder()
    storage.add_credential_revoker(lambda _conn: first)
    storage.add_credential_revoker(lambda _conn: second)
    with storage.unit_of_work() as uow:
        assert end_user_access(uow, "bob", reason="user_disabled", at=NOW) == 4
    assert first.calls == second.calls == [("user", "bob", "user_disabled")]


def _access_revoked(storage: SqlStorage) -> list[tuple[str, dict[str, object]]]:
    with storage.unit_of_work() as uow:
        return [
            (e.event.subject, e.event.payload)
            for e in uow.outbox.fetch_unpublished(1000)
            if e.event.type == EventType.ACCESS_REVOKED
        ]


def test_revocation_writes_one_access_revoked_event_in_the_same_unit_of_work(
    sqlite_database: Database, tmp_path: Path
) -> None:
    core = make_core(sqlite_database, tmp_path)
    try:
        device = enroll_device(core, "alice")
        core.storage.add_credential_revoker(lambda _conn: Recorder())  # 3 tokens, 2 for users
        core.storage.add_credential_revoker(lambda _conn: Recorder(), kind=SESSIONS)
        with core.storage.unit_of_work() as uow:
            assert end_device_access(uow, device.device_id, reason="posture_block", at=NOW) == 6
            assert end_user_access(uow, "alice", reason="user_disabled", at=NOW) == 4
        assert _access_revoked(core.storage) == [
            (
                device.device_id,
                {
                    "scope": "device",
                    "user_id": "alice",
                    "device_id": device.device_id,
                    "reason": "posture_block",
                    "count": 6,
                    "sessions": 3,
                },
            ),
            (
                "alice",
                {
                    "scope": "user",
                    "user_id": "alice",
                    "device_id": None,
                    "reason": "user_disabled",
                    "count": 4,
                    "sessions": 2,
                },
            ),
        ]
    finally:
        core.close()


def test_nothing_live_writes_no_event_and_a_rollback_writes_none(
    sqlite_database: Database, tmp_path: Path
) -> None:
    core = make_core(sqlite_database, tmp_path)
    try:
        device = enroll_device(core, "alice")

        class Empty(Recorder):
            def revoke_for_device(self, device_id: str, *, reason: str, at: datetime) -> int:
                return 0

            def revoke_for_user(self, user_id: str, *, reason: str, at: datetime) -> int:
                return 0

        core.storage.add_credential_revoker(lambda _conn: Empty())
        with core.storage.unit_of_work() as uow:
            assert end_device_access(uow, device.device_id, reason="x", at=NOW) == 0
            assert end_user_access(uow, "alice", reason="x", at=NOW) == 0
        assert _access_revoked(core.storage) == []
        core.storage.add_credential_revoker(lambda _conn: Recorder())
        with pytest.raises(RuntimeError), core.storage.unit_of_work() as uow:
            end_device_access(uow, device.device_id, reason="x", at=NOW)
            raise RuntimeError("the status change failed after the revocation")
        assert _access_revoked(core.storage) == []
    finally:
        core.close()
