"""Contract of ComplianceStore (compliance state + rule first-failure times)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mdm_core.domain.errors import NotFound
from mdm_core.domain.model import DeviceRecord, DeviceStatus
from mdm_core.posture.model import Ownership, Platform
from mdm_core.storage.compliance import ComplianceRecord, ComplianceState
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_device(storage: SqlStorage, device_id: str = "dev-1") -> None:
    with storage.unit_of_work() as uow:
        uow.devices.create(
            DeviceRecord(
                id=device_id,
                user_id="alice",
                platform=Platform.IOS,
                ownership=Ownership.CORPORATE,
                status=DeviceStatus.ACTIVE,
                serial_number=None,
                cert_serial=None,
                key_thumbprint=None,
                enrollment_generation=1,
                enrolled_at=T0,
                last_checkin_at=None,
            ),
            public_key=b"\x00",
        )


@pytest.fixture
def storage(database: Database) -> SqlStorage:
    s = SqlStorage(database)
    make_device(s)
    return s


def test_state_roundtrip_and_replace(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        assert uow.compliance.get_state("dev-1") is None
        first = ComplianceRecord(
            "dev-1", ComplianceState.NONCOMPLIANT, "warn", [{"code": "rule_failed"}], ["p"], T0
        )
        uow.compliance.put_state(first)
        assert uow.compliance.get_state("dev-1") == first
        second = ComplianceRecord("dev-1", ComplianceState.COMPLIANT, "allow", [], [], T0)
        uow.compliance.put_state(second)
    with storage.unit_of_work() as uow:
        assert uow.compliance.get_state("dev-1") == second


def test_evaluation_state_reads_state_and_failures_together(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        assert uow.compliance.evaluation_state("dev-1") == (None, {})
        assert uow.compliance.evaluation_state("ghost") == (None, {})
        uow.compliance.sync_rule_failures("dev-1", [("p", "a"), ("q", "b")], at=T0)
        assert uow.compliance.evaluation_state("dev-1") == (
            None,
            {("p", "a"): T0, ("q", "b"): T0},
        )
        record = ComplianceRecord(
            "dev-1", ComplianceState.NONCOMPLIANT, "warn", [{"code": "rule_failed"}], ["p"], T0
        )
        uow.compliance.put_state(record)
    with storage.unit_of_work() as uow:
        state, failures = uow.compliance.evaluation_state("dev-1")
        assert state == record == uow.compliance.get_state("dev-1")
        assert failures == uow.compliance.rule_failures("dev-1")
        uow.compliance.sync_rule_failures("dev-1", [], at=T0)
        assert uow.compliance.evaluation_state("dev-1") == (record, {})


def test_state_for_unknown_device_is_refused(storage: SqlStorage) -> None:
    with pytest.raises(NotFound), storage.unit_of_work() as uow:
        uow.compliance.put_state(
            ComplianceRecord("ghost", ComplianceState.UNKNOWN, "block", [], [], T0)
        )


def test_sync_keeps_first_failure_and_clears_passing(storage: SqlStorage) -> None:
    a, b, c = ("p", "a"), ("p", "b"), ("q", "c")
    with storage.unit_of_work() as uow:
        assert uow.compliance.rule_failures("dev-1") == {}
        assert uow.compliance.sync_rule_failures("dev-1", [a, b], at=T0) == {a: T0, b: T0}
    later = T0 + timedelta(days=2)
    with storage.unit_of_work() as uow:
        got = uow.compliance.sync_rule_failures("dev-1", [b, c], at=later)
        assert got == {b: T0, c: later}  # b keeps its first failure, a passed and is gone
        assert uow.compliance.rule_failures("dev-1") == {b: T0, c: later}
    with storage.unit_of_work() as uow:
        assert uow.compliance.sync_rule_failures("dev-1", [], at=later) == {}
        assert uow.compliance.rule_failures("dev-1") == {}


def test_sync_for_unknown_device(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        assert uow.compliance.sync_rule_failures("ghost", [], at=T0) == {}
    with pytest.raises(NotFound), storage.unit_of_work() as uow:
        uow.compliance.sync_rule_failures("ghost", [("p", "a")], at=T0)
