"""Offboarding a corporate device whose policy says ``full_wipe`` (through core.wipes).

Without the two-person rule the ``wipe`` is queued at once and the device becomes ``wiped``
only after it acknowledges; with it, the device is locked meanwhile, the job waits for two
different admins, and ``run_due`` picks the approved wipe up. BYOD never gets a full wipe.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from mdm_core.device.wipe_model import WipeRequestClosed
from mdm_core.directory.accounts import delete_account
from mdm_core.domain.model import DeviceStatus
from mdm_core.offboarding.model import Action, DeviceState, JobStatus
from mdm_core.posture.model import Ownership, Platform
from mdm_core.runtime import MdmCore
from mdm_core.storage.sql.database import Database
from tests.helpers.enrolled import enroll_device, make_core
from tests.unit.mdm_core.offboarding.helpers import ack, add_user, check_in, commands_of, now

ROOT = Path(__file__).resolve().parents[4]


def _policies(tmp_path: Path, two_person: bool) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", target)
    (target / "offboarding.yaml").write_text(
        "kind: OffboardingPolicy\nid: default-offboarding\nactions:\n"
        "  corporate: full_wipe\n  byod: selective_wipe\n"
        f"two_person_rule: {'true' if two_person else 'false'}\n"
    )
    return target


def _core(db: Database, tmp_path: Path, two_person: bool) -> Iterator[MdmCore]:
    core = make_core(db, tmp_path, policy_dir=_policies(tmp_path, two_person))
    try:
        yield core
    finally:
        core.close()


@pytest.fixture
def wipe_core(database: Database, tmp_path: Path) -> Iterator[MdmCore]:
    yield from _core(database, tmp_path, two_person=False)


@pytest.fixture
def two_person_core(database: Database, tmp_path: Path) -> Iterator[MdmCore]:
    yield from _core(database, tmp_path, two_person=True)


def _offboard(core: MdmCore) -> str:
    with core.storage.unit_of_work() as uow:
        job = core.offboarding.request(
            uow, user_id="bob", trigger="hr:generic", source_ref="e-1", effective_at=None,
            actor="hr:generic",
        )  # fmt: skip
    return job.id


def _device_row(core: MdmCore, device_id: str) -> object:
    [report] = core.offboarding.status("bob")
    return next(d for d in report.devices if d.device.device_id == device_id)


def test_full_wipe_queued_and_device_wiped_after_the_ack(wipe_core: MdmCore) -> None:
    core = wipe_core
    add_user(core.directory, "bob")
    corp = enroll_device(core, "bob", ownership=Ownership.CORPORATE, platform=Platform.MACOS)
    byod = enroll_device(core, "bob", ownership=Ownership.BYOD, platform=Platform.IOS)
    job_id = _offboard(core)
    assert [c["type"] for c in commands_of(core, corp.device_id)] == ["wipe"]
    assert [c["type"] for c in commands_of(core, byod.device_id)] == ["selective_wipe"]
    row = _device_row(core, corp.device_id)
    assert row.device.action is Action.FULL_WIPE and row.wipe_request_status == "queued"  # type: ignore[attr-defined]
    [wipe] = check_in(core, corp.device_id)
    assert core.offboarding.run_due() == 0  # delivered, not acknowledged: still active
    with core.storage.unit_of_work() as uow:
        assert uow.devices.get(corp.device_id).status is DeviceStatus.ACTIVE  # type: ignore[union-attr]
    ack(core, wipe)
    assert core.offboarding.run_due() >= 1
    with core.storage.unit_of_work() as uow:
        assert uow.devices.get(corp.device_id).status is DeviceStatus.WIPED  # type: ignore[union-attr]
    assert _device_row(core, corp.device_id).device.state is DeviceState.WIPED  # type: ignore[attr-defined]
    job = core.offboarding.get(job_id)
    assert job is not None and job.status is JobStatus.RUNNING  # the BYOD device is pending


def test_two_person_rule_locks_meanwhile_then_wipes_once_approved(
    two_person_core: MdmCore,
) -> None:
    core = two_person_core
    add_user(core.directory, "bob")
    corp = enroll_device(core, "bob", ownership=Ownership.CORPORATE, platform=Platform.MACOS)
    _offboard(core)
    assert [c["type"] for c in commands_of(core, corp.device_id)] == ["lock"]
    row = _device_row(core, corp.device_id)
    assert row.device.state is DeviceState.AWAITING_APPROVAL  # type: ignore[attr-defined]
    assert row.wipe_request_status == "pending_approval"  # type: ignore[attr-defined]
    request_id = row.device.wipe_request_id  # type: ignore[attr-defined]
    # The lock being acknowledged does not retire the device: the wipe is still to come.
    [lock] = check_in(core, corp.device_id)
    ack(core, lock)
    assert core.offboarding.run_due() == 0
    core.wipes.approve(request_id, approver="admin:ada")
    assert core.offboarding.run_due() == 0  # one signature is not enough
    core.wipes.approve(request_id, approver="admin:bea")
    assert core.offboarding.run_due() == 1  # the approved wipe is picked up
    assert [c["type"] for c in commands_of(core, corp.device_id)] == ["lock", "wipe"]
    [wipe] = check_in(core, corp.device_id)
    ack(core, wipe)
    assert core.offboarding.run_due() == 2  # wiped, then the job is done
    [report] = core.offboarding.status("bob")
    assert report.job.status is JobStatus.DONE
    assert report.devices[0].device.state is DeviceState.WIPED


def test_a_rejected_wipe_fails_the_device_and_keeps_it_locked(two_person_core: MdmCore) -> None:
    core = two_person_core
    add_user(core.directory, "bob")
    corp = enroll_device(core, "bob", ownership=Ownership.CORPORATE, platform=Platform.MACOS)
    _offboard(core)
    request_id = _device_row(core, corp.device_id).device.wipe_request_id  # type: ignore[attr-defined]
    core.wipes.reject(request_id, by="admin:ada", reason="keep the evidence")
    assert core.offboarding.run_due() == 2  # failed, then done
    row = _device_row(core, corp.device_id)
    assert row.device.state is DeviceState.FAILED  # type: ignore[attr-defined]
    assert [c["type"] for c in commands_of(core, corp.device_id)] == ["lock"]
    with core.storage.unit_of_work() as uow:
        assert uow.devices.get(corp.device_id).status is not DeviceStatus.WIPED  # type: ignore[union-attr]


def test_a_deleted_users_group_policy_still_asks_for_two_admins(
    database: Database, tmp_path: Path
) -> None:
    """The directory deletes the user (and their memberships) before the job runs: the
    two-person rule of their group's policy is read from the job's snapshot of the groups,
    not from the user's groups of now (none), which would pick the unassigned policy."""
    target = _policies(tmp_path, two_person=False)  # unassigned: full wipe, one signature
    (target / "offboarding-executives.yaml").write_text(
        "kind: OffboardingPolicy\nid: executives-offboarding\n"
        "assign: {groups: [executives]}\nactions:\n  corporate: full_wipe\n"
        "two_person_rule: true\n"
    )
    core = make_core(database, tmp_path, policy_dir=target)
    try:
        add_user(core.directory, "bob", ("executives",))
        corp = enroll_device(core, "bob", ownership=Ownership.CORPORATE, platform=Platform.MACOS)
        with core.storage.unit_of_work() as uow:  # the directory trigger fires in here
            assert delete_account(uow, "bob", at=now(), actor="directory:scim", source="scim")
        [report] = core.offboarding.status("bob")
        assert report.job.groups == ("executives",)
        [row] = report.devices
        assert row.wipe_request_status == "pending_approval"
        assert [c["type"] for c in commands_of(core, corp.device_id)] == ["lock"]
    finally:
        core.close()


def test_a_reinstatement_withdraws_a_full_wipe_still_waiting_for_approval(
    two_person_core: MdmCore,
) -> None:
    core = two_person_core
    add_user(core.directory, "bob")
    corp = enroll_device(core, "bob", ownership=Ownership.CORPORATE, platform=Platform.MACOS)
    _offboard(core)
    row = _device_row(core, corp.device_id)
    request_id = row.device.wipe_request_id  # type: ignore[attr-defined]
    core.offboarding.reinstate("bob", actor="admin:root", reason="wrong person")
    assert core.wipes.get(request_id).status == "cancelled"
    with pytest.raises(WipeRequestClosed):  # no approval brings it back
        core.wipes.approve(request_id, approver="admin:ada", now=now())
    assert [c["status"] for c in commands_of(core, corp.device_id)] == ["cancelled"]  # the lock
    row = _device_row(core, corp.device_id)
    assert row.device.state is DeviceState.CANCELLED  # type: ignore[attr-defined]
    assert row.device.detail == (  # type: ignore[attr-defined]
        "reinstated: lock cancelled; full wipe request withdrawn"
    )
    assert core.offboarding.run_due() == 0
    assert check_in(core, corp.device_id) == []
