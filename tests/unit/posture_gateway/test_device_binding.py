"""``PolicyDeviceBinding.still_bound``: which tokens stay usable after the login.

Known device, the subject's own, ``active``; user known and active -> bound. Anything else
(no device named, unknown device, another user's device, any other status, unknown or
disabled user) -> not bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mdm_core.access.wiring import evaluator_for
from mdm_core.domain.device_lifecycle import change_status
from mdm_core.domain.model import DeviceStatus
from mdm_core.runtime import MdmCore
from mdm_core.storage.directory import DirectoryUser
from mdm_core.storage.sql.database import Database
from posture_gateway.access.device_gate import PolicyDeviceBinding
from posture_gateway.oidc.grants import GrantSubject
from tests.helpers.enrolled import enroll_device, make_core

USER = "u-alice"


@pytest.fixture
def core(sqlite_database: Database, tmp_path: Path) -> Iterator[MdmCore]:
    built = make_core(sqlite_database, tmp_path)
    built.directory.upsert_user(
        DirectoryUser(
            id=USER, username="alice", active=True, source="local", updated_at=datetime.now(UTC)
        )
    )
    try:
        yield built
    finally:
        built.close()


def _subject(device_id: str | None, user_id: str = USER) -> GrantSubject:
    return GrantSubject(user_id=user_id, auth_time=1, acr="", amr=("pwd",), device_id=device_id)


def _binding(core: MdmCore) -> PolicyDeviceBinding:
    return PolicyDeviceBinding(evaluator_for(core), core.storage)


def test_active_device_of_an_active_user_is_bound(core: MdmCore) -> None:
    device = enroll_device(core, USER)
    assert _binding(core).still_bound(_subject(device.device_id)) is True


def test_no_device_unknown_device_or_another_users_device(core: MdmCore) -> None:
    binding = _binding(core)
    other = enroll_device(core, "bob")
    assert binding.still_bound(_subject(None)) is False
    assert binding.still_bound(_subject("no-such-device")) is False
    assert binding.still_bound(_subject(other.device_id)) is False


@pytest.mark.parametrize("status", [s for s in DeviceStatus if s is not DeviceStatus.ACTIVE])
def test_any_status_but_active_is_not_bound(core: MdmCore, status: DeviceStatus) -> None:
    device = enroll_device(core, USER)
    with core.storage.unit_of_work() as uow:
        change_status(uow, device.device_id, status, reason="t", at=datetime.now(UTC))
    assert _binding(core).still_bound(_subject(device.device_id)) is False


def test_disabled_or_unknown_user_is_not_bound(core: MdmCore) -> None:
    device = enroll_device(core, USER)
    core.directory.set_active(USER, False)
    assert _binding(core).still_bound(_subject(device.device_id)) is False
    ghost = enroll_device(core, "ghost")  # a device whose user is not in the mirror
    assert _binding(core).still_bound(_subject(ghost.device_id, "ghost")) is False


def test_recheck_without_a_device_blocks_and_is_audited(core: MdmCore) -> None:
    verdict = _binding(core).recheck(
        subject=_subject(None), client_id="app", requested_scopes=frozenset({"openid"})
    )
    assert verdict.outcome == "block"
    with core.storage.unit_of_work() as uow:
        audited = [e for e in uow.audit.recent(f"user:{USER}") if e.action == "access.decision"]
    assert audited and audited[0].detail["channel"] == "oidc_refresh"
    assert audited[0].outcome == "block"
