"""Directory triggers through the real front door: a SCIM ``active: false`` PATCH and a
SCIM ``DELETE`` on ``/scim/v2`` (the LDAP ones: tests/integration/ldap/test_ldap_offboarding.py).

Each makes one offboarding job (trigger ``directory:scim`` / ``directory:ldap``) with the
devices' commands queued in the SAME transaction as the directory change: a failure while
offboarding rolls the directory change back too (asserted on the database). A delete keeps
the user's groups (read before the memberships went) on the job.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from mdm_core.posture.model import Ownership, Platform
from mdm_core.runtime import MdmCore
from mdm_core.storage.sql.tables import commands, offboarding_jobs
from tests.helpers.enrolled import enroll_device
from tests.integration.scim_fixtures import GROUP, OKTA_TOKEN, Scim, make_app
from tests.unit.mdm_core.offboarding.helpers import commands_of


def jobs(core: MdmCore) -> list[Any]:
    with core.database.engine.connect() as conn:
        return list(conn.execute(select(offboarding_jobs)).all())


def command_count(core: MdmCore) -> int:
    with core.database.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(commands)).scalar() or 0)


# --- SCIM -------------------------------------------------------------------------------------


@pytest.fixture
def scim_app(tmp_path: Path) -> Iterator[Flask]:
    yield from make_app(tmp_path)


def core_of(app: Flask) -> MdmCore:
    core = app.extensions["posture"].core
    assert isinstance(core, MdmCore)
    return core


def _scim_user_with_devices(app: Flask) -> tuple[Scim, str, dict[str, str]]:
    okta = Scim(app.test_client(), OKTA_TOKEN)
    user = okta.user("carol@example.com")
    made = okta.call(
        "POST",
        "/Groups",
        {"schemas": [GROUP], "displayName": "Finance", "members": [{"value": user["id"]}]},
    )
    assert made.status_code == 201, made.get_data(as_text=True)
    core = core_of(app)
    byod = enroll_device(core, user["id"], ownership=Ownership.BYOD, platform=Platform.IOS)
    corp = enroll_device(core, user["id"], ownership=Ownership.CORPORATE, platform=Platform.MACOS)
    return okta, user["id"], {"byod": byod.device_id, "corp": corp.device_id}


def test_scim_active_false_offboards_in_the_same_transaction(scim_app: Flask) -> None:
    okta, user_id, devices = _scim_user_with_devices(scim_app)
    answer = okta.patch(f"/Users/{user_id}", {"op": "replace", "value": {"active": False}})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    core = core_of(scim_app)
    [job] = jobs(core)
    assert (job.user_id, job.trigger, job.status) == (user_id, "directory:scim", "running")
    assert job.groups == ["Finance"] and job.username == "carol@example.com"
    assert [c["type"] for c in commands_of(core, devices["byod"])] == ["selective_wipe"]
    assert [c["type"] for c in commands_of(core, devices["corp"])] == ["lock"]
    # Re-activating through SCIM does not lift the block; a second disable is the same job.
    okta.patch(f"/Users/{user_id}", {"op": "replace", "value": {"active": True}})
    assert core.directory.user_context(user_id).active is False  # type: ignore[union-attr]
    okta.patch(f"/Users/{user_id}", {"op": "replace", "value": {"active": False}})
    assert len(jobs(core)) == 1 and len(commands_of(core, devices["corp"])) == 1


def test_scim_delete_keeps_the_groups_and_offboards(scim_app: Flask) -> None:
    okta, user_id, devices = _scim_user_with_devices(scim_app)
    assert okta.call("DELETE", f"/Users/{user_id}").status_code == 204
    core = core_of(scim_app)
    with core.storage.unit_of_work() as uow:
        assert uow.directory_users.get(user_id) is None  # the row is gone...
    [job] = jobs(core)
    assert job.trigger == "directory:scim" and job.groups == ["Finance"]  # ...its groups kept
    assert [c["type"] for c in commands_of(core, devices["corp"])] == ["lock"]
    assert core.directory.user_context(user_id) is None


def test_a_failing_offboarding_rolls_the_scim_change_back(
    scim_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    okta, user_id, _ = _scim_user_with_devices(scim_app)
    core = core_of(scim_app)
    before = command_count(core)

    def broken(*_: object) -> dict[str, Any]:
        raise RuntimeError("selective wipe payload unavailable")

    monkeypatch.setattr(core.offboarding, "selective_payload", broken)
    answer = okta.patch(f"/Users/{user_id}", {"op": "replace", "value": {"active": False}})
    assert answer.status_code >= 500
    # Nothing of it stayed: the user is still active, no job, no command, not blocked.
    with core.storage.unit_of_work() as uow:
        user = uow.directory_users.get(user_id)
        assert user is not None and user.active
        assert uow.offboarding.blocked(user_id) is None
    assert jobs(core) == [] and command_count(core) == before
    monkeypatch.undo()
    assert okta.call("DELETE", f"/Users/{user_id}").status_code == 204
    assert len(jobs(core)) == 1  # once it works again, the delete offboards
