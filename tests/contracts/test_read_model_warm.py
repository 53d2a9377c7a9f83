"""Contract: the read model warmed in bulk (worker start), on SQLite and PostgreSQL.

After :meth:`CachedDecisionReads.warm` a warmed device's decision reads only the versions; a
write after the warm-up is seen by the next read; a write landing between the version read
and the bulk read leaves an entry that looks OLDER than its data (refetched), never newer;
a warm-up that fails raises and caches nothing.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Connection, update
from sqlalchemy.exc import OperationalError

from mdm_core.directory.mirror import DirectoryService, add_membership
from mdm_core.read_model import CachedDecisionReads, StoreDecisionReads, decision_reads
from mdm_core.read_model.cache import MISS
from mdm_core.read_model.warm import Fleet, cache_entries_for
from mdm_core.storage.directory import DirectoryGroup, DirectoryUser, MemberKind, Membership
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.tables import devices
from mdm_core.storage.sql.uow import SqlStorage
from tests.contracts.device_rows import add_device
from tests.contracts.test_read_model import T0, _posture, _Statements, _versions


def _fleet(database: Database) -> SqlStorage:
    """d1 (posture, a failing rule, owner in nested groups), d2 (posture, owner in no group),
    d3 (never reported, owner not in the directory); d1 checked in last."""
    storage = SqlStorage(database)
    directory = DirectoryService(storage)
    for uid in ("u-d1", "u-d2"):
        directory.upsert_user(
            DirectoryUser(id=uid, username=uid[2:], active=True, source="local", updated_at=T0)
        )
    for gid, name in (("g1", "payroll"), ("g2", "finance"), ("g3", "staff")):
        directory.upsert_group(DirectoryGroup(id=gid, name=name, source="local", updated_at=T0))
    with storage.unit_of_work() as uow:
        add_membership(uow, Membership("g1", "u-d1", MemberKind.USER), at=T0)
        add_membership(uow, Membership("g2", "g1", MemberKind.GROUP), at=T0)
        add_membership(uow, Membership("g3", "g2", MemberKind.GROUP), at=T0)
        add_membership(uow, Membership("g1", "g3", MemberKind.GROUP), at=T0)  # a cycle
    for did in ("d1", "d2", "d3"):
        add_device(database, did)
    with storage.unit_of_work() as uow:
        uow.posture.record("d2", _posture(0), received_at=T0, history_length=3)
        uow.posture.record(
            "d1", _posture(1, encrypted=False), received_at=T0 + timedelta(1), history_length=3
        )
        uow.compliance.sync_rule_failures("d1", [("baseline", "encryption")], at=T0)
    return storage


def test_after_warm_a_warmed_decision_reads_only_the_versions(database: Database) -> None:
    storage = _fleet(database)
    cached = CachedDecisionReads(storage)
    plain = StoreDecisionReads(storage)
    with _Statements(database) as bulk:
        report = cached.warm(100)
    assert bulk.count <= 5  # versions + identities + postures + failures + users, not per device
    assert (report.devices, report.device_states, report.users) == (3, 3, 2)
    for uid, did in (("u-d1", "d1"), ("u-d2", "d2")):
        with _Statements(database) as seen:
            identity = cached.identity(did)
            state = cached.decision_state(uid, did)
            record = cached.device(did)
        assert seen.count == 3, did  # three version reads (no scope here), no data read
        assert identity is not None and record == identity.device and record.id == did
        assert state == plain.decision_state(uid, did), did
    user = cached.decision_state("u-d1", "d1").user
    assert user is not None and user.groups == {"payroll", "finance", "staff"}
    with _Statements(database) as seen:  # d3's owner is not in the directory: not warmed
        assert cached.identity("d3") is not None and cached.device("d3") is not None
    assert seen.count == 2
    assert cached.decision_state("u-d3", "d3") == plain.decision_state("u-d3", "d3")


def test_a_check_in_after_warm_is_seen_by_the_next_read(database: Database) -> None:
    storage = _fleet(database)
    cached = CachedDecisionReads(storage)
    cached.warm(100)
    with storage.unit_of_work() as uow:
        uow.posture.record("d2", _posture(5, encrypted=False), received_at=T0, history_length=3)
        uow.compliance.sync_rule_failures("d2", [("baseline", "encryption")], at=T0)
    state = cached.decision_state("u-d2", "d2")
    assert state.posture is not None and state.posture.posture.storage_encrypted is False
    assert dict(state.rule_failures) == {("baseline", "encryption"): T0}
    with database.transaction() as conn:
        conn.execute(update(devices).where(devices.c.id == "d1").values(status="quarantined"))
    identity = cached.identity("d1")
    assert identity is not None and identity.device.status.value == "quarantined"


def test_a_revocation_between_the_version_read_and_the_bulk_read_is_refetched(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = _fleet(database)
    cached = CachedDecisionReads(storage)
    real = decision_reads.read_fleet

    def revoke_then_read(conn: Connection, limit: int) -> Fleet:
        # the versions are read: a wipe commits now, before the data is read
        with database.transaction() as other:
            other.execute(update(devices).where(devices.c.id == "d1").values(status="wiped"))
        return real(conn, limit)

    monkeypatch.setattr(decision_reads, "read_fleet", revoke_then_read)
    before = _versions(storage, "device:d1")["device:d1"]
    cached.warm(100)
    now = _versions(storage, "device:d1")["device:d1"]
    assert now > before
    # cached under the version read FIRST (before the wipe): it looks older than the row,
    # so it is not served; had the data been read first and the versions after, it would be
    # cached under the new version, possibly over data from before the wipe
    assert cached.cache.get(("identity", "d1"), (before,)) is not MISS
    assert cached.cache.get(("identity", "d1"), (now,)) is MISS
    identity = cached.identity("d1")
    assert identity is not None and identity.device.status.value == "wiped"
    record = cached.device("d1")
    assert record is not None and record.status.value == "wiped"


def test_a_failed_warm_up_raises_and_caches_nothing(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = _fleet(database)
    cached = CachedDecisionReads(storage)

    def broken(conn: Connection, limit: int) -> Fleet:
        raise OperationalError("SELECT ...", {}, Exception("connection lost"))

    monkeypatch.setattr(decision_reads, "read_fleet", broken)
    with pytest.raises(OperationalError):
        cached.warm(100)
    assert len(cached.cache) == 0
    monkeypatch.undo()
    assert cached.decision_state("u-d1", "d1") == StoreDecisionReads(storage).decision_state(
        "u-d1", "d1"
    )


def test_warm_takes_the_most_recently_checked_in_devices_first(database: Database) -> None:
    storage = _fleet(database)
    cached = CachedDecisionReads(storage)
    report = cached.warm(1)
    assert (report.devices, report.device_states, report.users) == (1, 1, 1)
    v = _versions(storage, "device:d1", "device:d2")
    assert cached.cache.get(("identity", "d1"), (v["device:d1"],)) is not MISS
    assert cached.cache.get(("identity", "d2"), (v["device:d2"],)) is MISS
    assert cached.warm(0).devices == 0


def test_the_cache_is_sized_for_the_warmed_devices() -> None:
    assert cache_entries_for(0) == 50_000
    assert cache_entries_for(50_000) >= 50_000 * 4
    with pytest.raises(ValueError):
        cache_entries_for(-1)
