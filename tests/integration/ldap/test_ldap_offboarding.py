"""Directory triggers from a real slapd: an LDAP account disabled (incremental sync) and one
removed (full sync) each make one offboarding job (trigger ``directory:ldap``) with the
devices' commands queued in the sync's own transaction; a failure while offboarding rolls the
sync back (the account stays active in the mirror) and the next sync retries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from idp_connectors.ldap import LdapSync
from mdm_core.posture.model import Ownership, Platform
from mdm_core.runtime import MdmCore
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.tables import offboarding_jobs
from tests.helpers.enrolled import enroll_device, make_core
from tests.helpers.ldap_data import DirectoryData, Writer
from tests.integration.ldap.conftest import settings_for
from tests.slapd import PrivateSlapd
from tests.unit.mdm_core.offboarding.helpers import commands_of


def jobs(core: MdmCore) -> list[Any]:
    with core.database.engine.connect() as conn:
        return list(conn.execute(select(offboarding_jobs)).all())


@pytest.fixture
def ldap_core(sqlite_database: Database, tmp_path: Path) -> Iterator[MdmCore]:
    core = make_core(sqlite_database, tmp_path)
    try:
        yield core
    finally:
        core.close()


@pytest.fixture
def ldap_sync(slapd: PrivateSlapd, ldap_core: MdmCore) -> Callable[[DirectoryData], LdapSync]:
    return lambda data: LdapSync(settings_for(slapd, data), ldap_core.storage)


def test_ldap_disabled_and_removed_accounts_are_offboarded(
    ldap_core: MdmCore,
    ldap_sync: Callable[[DirectoryData], LdapSync],
    small: DirectoryData,
    writer: Writer,
) -> None:
    ldap_sync(small).run()
    victim, gone = [p for p in small.people if not p.disabled][:2]
    ids = {"victim": str(victim.guid), "gone": str(gone.guid)}
    devices = {
        k: enroll_device(ldap_core, user_id, ownership=Ownership.CORPORATE).device_id
        for k, user_id in ids.items()
    }
    writer.set_disabled(victim, True)
    ldap_sync(small).run()
    [job] = jobs(ldap_core)
    assert (job.user_id, job.trigger) == (ids["victim"], "directory:ldap")
    assert [c["type"] for c in commands_of(ldap_core, devices["victim"])] == ["lock"]
    writer.delete_user(gone)
    ldap_sync(small).run(full=True)
    by_user = {j.user_id: j for j in jobs(ldap_core)}
    assert by_user[ids["gone"]].trigger == "directory:ldap"
    assert [c["type"] for c in commands_of(ldap_core, devices["gone"])] == ["lock"]
    # A later full sync that sees the account enabled again does not lift the block.
    writer.set_disabled(victim, False)
    ldap_sync(small).run(full=True)
    assert ldap_core.directory.user_context(ids["victim"]).active is False  # type: ignore[union-attr]
    assert len(jobs(ldap_core)) == 2


def test_a_failing_offboarding_rolls_the_ldap_sync_back(
    ldap_core: MdmCore,
    ldap_sync: Callable[[DirectoryData], LdapSync],
    small: DirectoryData,
    writer: Writer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ldap_sync(small).run()
    victim = next(p for p in small.people if not p.disabled)
    enroll_device(ldap_core, str(victim.guid), ownership=Ownership.BYOD, platform=Platform.IOS)

    def broken(*_: object) -> dict[str, Any]:
        raise RuntimeError("boom")

    monkeypatch.setattr(ldap_core.offboarding, "selective_payload", broken)
    writer.set_disabled(victim, True)
    with pytest.raises(RuntimeError):
        ldap_sync(small).run()
    with ldap_core.storage.unit_of_work() as uow:
        user = uow.directory_users.get(str(victim.guid))
        assert user is not None and user.active  # the disable rolled back with the job
    assert jobs(ldap_core) == []
    monkeypatch.undo()
    ldap_sync(small).run()  # the next sync retries: now it offboards
    assert [j.user_id for j in jobs(ldap_core)] == [str(victim.guid)]
