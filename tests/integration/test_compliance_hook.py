"""The policy engine behind check-ins, on real SQLite and PostgreSQL stores."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from mdm_core.bus.events import EventType
from mdm_core.domain.model import DeviceStatus
from mdm_core.policy.compliance_hook import PolicyComplianceHook
from mdm_core.policy.repository import PolicyRepository
from mdm_core.posture.model import Posture
from mdm_core.storage.compliance import ComplianceState
from mdm_core.storage.directory import DirectoryGroup, DirectoryUser, MemberKind, Membership
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage
from tests.unit.mdm_core.policy.factories import NOW, SIMPLE, device, healthy_posture, write

FINANCE = """
kind: CompliancePolicy
id: finance
assign: {groups: [finance]}
rules:
  - {id: long-passcode, severity: high, passcode_min_length: 10, remediation: x}
"""


@pytest.fixture
def storage(database: Database) -> SqlStorage:
    s = SqlStorage(database)
    with s.unit_of_work() as uow:
        uow.devices.create(device(), public_key=b"\x00")
        uow.directory_users.upsert(DirectoryUser("alice", "alice", True, "local", NOW))
    return s


@pytest.fixture
def hook(tmp_path: Path) -> PolicyComplianceHook:
    write(tmp_path, {"p.yaml": SIMPLE, "f.yaml": FINANCE})
    repo = PolicyRepository(tmp_path, clock=lambda: NOW)
    repo.reload()
    return PolicyComplianceHook(repo)


def check_in(storage: SqlStorage, hook: PolicyComplianceHook, posture: Posture, at=NOW):
    with storage.unit_of_work() as uow:
        dev = uow.devices.get("dev-1")
        assert dev is not None
        return hook.after_checkin(uow, dev, posture, None, at)


def events(storage: SqlStorage) -> list:
    with storage.unit_of_work() as uow:
        return [
            e.event
            for e in uow.outbox.fetch_unpublished(100)
            if e.event.type == EventType.COMPLIANCE_CHANGED
        ]


def status(storage: SqlStorage) -> DeviceStatus:
    with storage.unit_of_work() as uow:
        dev = uow.devices.get("dev-1")
        assert dev is not None
        return dev.status


def test_healthy_checkin_is_compliant_and_emits_once(storage, hook) -> None:
    summary = check_in(storage, hook, healthy_posture())
    assert summary is not None
    assert (summary.state, summary.outcome) == ("compliant", "allow")
    check_in(storage, hook, healthy_posture(), NOW + timedelta(minutes=15))
    emitted = events(storage)
    assert len(emitted) == 1
    assert emitted[0].subject == "dev-1"
    assert emitted[0].payload["state"] == "compliant"
    assert emitted[0].payload["previous_state"] is None
    with storage.unit_of_work() as uow:
        record = uow.compliance.get_state("dev-1")
    assert record is not None and record.state is ComplianceState.COMPLIANT


def test_critical_failure_quarantines_until_reenrollment(storage, hook) -> None:
    check_in(storage, hook, healthy_posture())
    summary = check_in(storage, hook, healthy_posture(jailbroken=True), NOW + timedelta(minutes=1))
    assert summary is not None
    assert (summary.state, summary.outcome) == ("quarantined", "block")
    assert status(storage) is DeviceStatus.QUARANTINED
    last = events(storage)[-1]
    assert last.payload["quarantined"] is True
    assert last.payload["previous_state"] == "compliant"
    assert "base/no-jailbreak" in last.payload["failing_rules"]
    # a healthy report does not lift quarantine: only re-enrollment + a passing check-in do
    summary = check_in(storage, hook, healthy_posture(), NOW + timedelta(minutes=2))
    assert summary is not None and summary.state == "quarantined"
    assert summary.reasons[0]["code"] == "device_quarantined"
    assert status(storage) is DeviceStatus.QUARANTINED


def test_pending_verification_becomes_active_only_on_a_passing_checkin(storage, hook) -> None:
    with storage.unit_of_work() as uow:
        uow.devices.update_status("dev-1", DeviceStatus.PENDING_VERIFICATION, reason="re", at=NOW)
    check_in(storage, hook, healthy_posture(storage_encrypted=False))
    assert status(storage) is DeviceStatus.QUARANTINED  # failed again
    with storage.unit_of_work() as uow:
        uow.devices.update_status("dev-1", DeviceStatus.PENDING_VERIFICATION, reason="re", at=NOW)
    summary = check_in(storage, hook, healthy_posture(), NOW + timedelta(minutes=5))
    assert status(storage) is DeviceStatus.ACTIVE
    assert summary is not None and summary.state == "compliant"


def test_grace_counts_from_the_first_failure_and_clears_on_pass(storage, hook) -> None:
    old = healthy_posture(os_version="17.1")
    first = check_in(storage, hook, old)
    assert first is not None and first.outcome == "warn"
    later = check_in(storage, hook, old, NOW + timedelta(days=4))
    assert later is not None and later.outcome == "restrict"
    with storage.unit_of_work() as uow:
        assert uow.compliance.rule_failures("dev-1") == {("base", "os"): NOW}
    fixed = check_in(storage, hook, healthy_posture(), NOW + timedelta(days=5))
    assert fixed is not None and fixed.outcome == "allow"
    with storage.unit_of_work() as uow:
        assert uow.compliance.rule_failures("dev-1") == {}
    again = check_in(storage, hook, old, NOW + timedelta(days=6))
    assert again is not None and again.outcome == "warn"  # a new first failure
    assert [e.payload["outcome"] for e in events(storage)] == ["warn", "restrict", "allow", "warn"]


def test_group_membership_selects_policies(storage, hook) -> None:
    posture = healthy_posture(passcode_min_length=8)
    assert check_in(storage, hook, posture).outcome == "allow"  # type: ignore[union-attr]
    with storage.unit_of_work() as uow:
        uow.directory_groups.upsert(DirectoryGroup("g-fin", "finance", "local", NOW))
        uow.memberships.add(Membership("g-fin", "alice", MemberKind.USER))
    summary = check_in(storage, hook, posture, NOW + timedelta(minutes=1))
    assert summary is not None and summary.outcome == "block"
    assert summary.policy_ids == ["finance"]


def test_no_valid_policy_set_is_not_compliant(storage, tmp_path: Path) -> None:
    repo = PolicyRepository(tmp_path / "nothing", clock=lambda: NOW)
    repo.reload()
    summary = check_in(storage, PolicyComplianceHook(repo), healthy_posture())
    assert summary is not None
    assert (summary.state, summary.outcome) == ("noncompliant", "block")
    assert summary.reasons[0]["code"] == "no_compliance_policy"


def test_retired_device_status_is_never_changed(storage, hook) -> None:
    with storage.unit_of_work() as uow:
        uow.devices.update_status("dev-1", DeviceStatus.RETIRED, reason="gone", at=NOW)
    check_in(storage, hook, healthy_posture(jailbroken=True))
    assert status(storage) is DeviceStatus.RETIRED


def test_hook_refuses_to_be_built_without_a_repository() -> None:
    with pytest.raises(ValueError):
        PolicyComplianceHook(None)  # type: ignore[arg-type]


class CountingRevoker:
    """A revoker that reports one live credential per call (what was asked is recorded)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def revoke_for_device(self, device_id: str, *, reason: str, at: datetime) -> int:
        self.calls.append((device_id, reason))
        return 1

    def revoke_for_user(self, user_id: str, *, reason: str, at: datetime) -> int:
        self.calls.append((user_id, reason))
        return 1


def test_posture_reaching_block_without_quarantine_revokes_once(storage, hook) -> None:
    revoker = CountingRevoker()
    storage.add_credential_revoker(lambda _conn: revoker)
    old = healthy_posture(os_version="17.1")
    assert check_in(storage, hook, old).outcome == "warn"  # type: ignore[union-attr]
    assert check_in(storage, hook, old, NOW + timedelta(days=4)).outcome == "restrict"  # type: ignore[union-attr]
    assert revoker.calls == []  # warn and restrict keep access
    blocked = check_in(storage, hook, old, NOW + timedelta(days=8))
    assert blocked is not None and blocked.outcome == "block"
    assert status(storage) is DeviceStatus.ACTIVE  # not quarantined: a grace timeline
    assert revoker.calls == [("dev-1", "posture_block")]
    check_in(storage, hook, old, NOW + timedelta(days=8, minutes=15))  # still blocked
    assert revoker.calls == [("dev-1", "posture_block")]  # nothing new could have been issued
    with storage.unit_of_work() as uow:
        revoked = [
            e.event.payload
            for e in uow.outbox.fetch_unpublished(100)
            if e.event.type == EventType.ACCESS_REVOKED
        ]
    assert revoked == [
        {
            "scope": "device",
            "user_id": "alice",
            "device_id": "dev-1",
            "reason": "posture_block",
            "count": 1,
            "sessions": 0,
        }
    ]


def test_quarantine_revokes_through_the_status_change_only(storage, hook) -> None:
    revoker = CountingRevoker()
    storage.add_credential_revoker(lambda _conn: revoker)
    check_in(storage, hook, healthy_posture())
    check_in(storage, hook, healthy_posture(jailbroken=True), NOW + timedelta(minutes=1))
    assert revoker.calls == [("dev-1", "device_quarantined")]
