"""Contract: the read model's versions and cached decision reads, on SQLite and PostgreSQL.

Every write to a watched table bumps the entity's version in the writer's transaction (the
triggers of migration 0006), a rolled-back write bumps nothing, and a cached read is never
answered over a newer committed write: the version is read first, in one statement.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import event, update

from mdm_core.directory.mirror import DirectoryService, add_membership
from mdm_core.policy.model import UserContext
from mdm_core.posture.model import ManagedApp, Platform, Posture
from mdm_core.read_model import (
    DIRECTORY,
    CachedDecisionReads,
    SqlVersionStore,
    StoreDecisionReads,
    device_key,
)
from mdm_core.storage.directory import DirectoryGroup, DirectoryUser, MemberKind, Membership
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.tables import devices
from mdm_core.storage.sql.uow import SqlStorage
from tests.contracts.device_rows import add_device

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _posture(n: int, *, encrypted: bool = True) -> Posture:
    return Posture(
        platform=Platform.ANDROID,
        collected_at=T0 + timedelta(minutes=n),
        os_version=f"14.{n}",
        security_patch_level=date(2026, 2, 1),
        storage_encrypted=encrypted,
        managed_apps=(ManagedApp(app_id="com.example.mail", version="1.0"),),
    )


def _versions(storage: SqlStorage, *keys: str) -> dict[str, int]:
    with storage.unit_of_work() as uow:
        return dict(SqlVersionStore(uow.conn).versions(keys))


def _alice(directory: DirectoryService, *, active: bool = True) -> None:
    directory.upsert_user(
        DirectoryUser(id="u-alice", username="alice", active=active, source="local", updated_at=T0)
    )


class _Statements:
    """Statements and transactions; a PostgreSQL read in the autocommit pool counts as one
    statement and no transaction."""

    def __init__(self, database: Database) -> None:
        self.count = 0
        self.transactions = 0
        self._engine = database.engine
        self._autocommit = database.autocommit_engine

    def _stmt(self, *_: object) -> None:
        self.count += 1

    def _begin(self, *_: object) -> None:
        self.transactions += 1

    def _autocommit_read(self, *_: object) -> None:
        self.count += 1

    def __enter__(self) -> _Statements:
        event.listen(self._engine, "before_cursor_execute", self._stmt)
        event.listen(self._engine, "begin", self._begin)
        if self._autocommit is not None:
            event.listen(self._autocommit, "checkout", self._autocommit_read)
        return self

    def __exit__(self, *_: object) -> None:
        event.remove(self._engine, "before_cursor_execute", self._stmt)
        event.remove(self._engine, "begin", self._begin)
        if self._autocommit is not None:
            event.remove(self._autocommit, "checkout", self._autocommit_read)


def test_unknown_keys_are_version_zero_and_empty_reads_nothing(database: Database) -> None:
    storage = SqlStorage(database)
    assert _versions(storage, device_key("nope"), DIRECTORY) == {"device:nope": 0, DIRECTORY: 0}
    assert _versions(storage) == {}


def test_every_watched_write_bumps_its_entity_in_the_same_transaction(
    database: Database,
) -> None:
    storage = SqlStorage(database)
    add_device(database, "d1")
    add_device(database, "d2")
    v0 = _versions(storage, device_key("d1"), device_key("d2"))
    with storage.unit_of_work() as uow:
        uow.posture.record("d1", _posture(0), received_at=T0, history_length=3)
    v1 = _versions(storage, device_key("d1"), device_key("d2"))
    assert v1["device:d1"] > v0["device:d1"] and v1["device:d2"] == v0["device:d2"]
    with storage.unit_of_work() as uow:
        uow.compliance.sync_rule_failures("d1", [("baseline", "encryption")], at=T0)
    v2 = _versions(storage, device_key("d1"))
    assert v2["device:d1"] > v1["device:d1"]
    with database.transaction() as conn:  # a status change made by any code path
        conn.execute(update(devices).where(devices.c.id == "d1").values(status="quarantined"))
    v3 = _versions(storage, device_key("d1"))
    assert v3["device:d1"] > v2["device:d1"]
    with storage.unit_of_work() as uow:
        uow.compliance.sync_rule_failures("d1", [], at=T0)  # a delete bumps too
    assert _versions(storage, device_key("d1"))["device:d1"] > v3["device:d1"]


def test_a_rolled_back_write_bumps_nothing(database: Database) -> None:
    storage = SqlStorage(database)
    add_device(database, "d1")
    before = _versions(storage, device_key("d1"))
    with pytest.raises(RuntimeError), storage.unit_of_work() as uow:
        uow.posture.record("d1", _posture(0), received_at=T0, history_length=3)
        raise RuntimeError("abort")
    assert _versions(storage, device_key("d1")) == before


def test_directory_writes_bump_the_directory_key(database: Database) -> None:
    storage = SqlStorage(database)
    directory = DirectoryService(storage)
    v0 = _versions(storage, DIRECTORY)[DIRECTORY]
    _alice(directory)
    v1 = _versions(storage, DIRECTORY)[DIRECTORY]
    assert v1 > v0
    directory.upsert_group(DirectoryGroup(id="g1", name="staff", source="local", updated_at=T0))
    with storage.unit_of_work() as uow:
        add_membership(uow, Membership("g1", "u-alice", MemberKind.USER), at=T0)
    assert _versions(storage, DIRECTORY)[DIRECTORY] > v1


def test_cached_reads_equal_the_store_and_follow_every_committed_change(
    database: Database,
) -> None:
    storage = SqlStorage(database)
    directory = DirectoryService(storage)
    _alice(directory)
    add_device(database, "d1")
    with storage.unit_of_work() as uow:
        uow.posture.record("d1", _posture(0), received_at=T0, history_length=3)
    cached = CachedDecisionReads(storage)
    plain = StoreDecisionReads(storage)
    first = cached.decision_state("u-alice", "d1")
    assert first == plain.decision_state("u-alice", "d1")
    assert first.posture is not None and first.posture.posture.storage_encrypted is True
    assert first.user == UserContext(id="u-alice", groups=frozenset(), active=True)

    # A check-in degrades the device: the very next cached read sees it.
    with storage.unit_of_work() as uow:
        uow.posture.record("d1", _posture(1, encrypted=False), received_at=T0, history_length=3)
        uow.compliance.sync_rule_failures("d1", [("baseline", "encryption")], at=T0)
    degraded = cached.decision_state("u-alice", "d1")
    assert degraded.posture is not None and degraded.posture.posture.storage_encrypted is False
    assert dict(degraded.rule_failures) == {("baseline", "encryption"): T0}

    # The directory disables the user: seen at once.
    _alice(directory, active=False)
    user = cached.decision_state("u-alice", "d1").user
    assert user is not None and user.active is False
    assert cached.decision_state("u-alice", "d1") == plain.decision_state("u-alice", "d1")


def test_a_warm_read_is_one_statement(database: Database) -> None:
    storage = SqlStorage(database)
    _alice(DirectoryService(storage))
    add_device(database, "d1")
    with storage.unit_of_work() as uow:
        uow.posture.record("d1", _posture(0), received_at=T0, history_length=3)
    cached = CachedDecisionReads(storage)
    cached.decision_state("u-alice", "d1")
    with _Statements(database) as seen:
        cached.decision_state("u-alice", "d1")
    # one version read: SQLite in one (in-process) transaction, PostgreSQL autocommit
    assert (seen.count, seen.transactions) == (1, 0 if database.is_postgres else 1)
    with _Statements(database) as cold:
        StoreDecisionReads(storage).decision_state("u-alice", "d1")
    assert cold.count >= 4  # user, memberships, posture, rule failures


def test_unknown_user_and_device_are_cached_as_absent_until_they_appear(
    database: Database,
) -> None:
    storage = SqlStorage(database)
    cached = CachedDecisionReads(storage)
    state = cached.decision_state("u-alice", "d1")
    assert state.user is None and state.posture is None and dict(state.rule_failures) == {}
    assert cached.device("d1") is None
    _alice(DirectoryService(storage))
    add_device(database, "d1")
    assert cached.decision_state("u-alice", "d1").user is not None
    record = cached.device("d1")
    assert record is not None and record.id == "d1"


def test_the_cache_is_bounded_and_clear_drops_everything(database: Database) -> None:
    from mdm_core.read_model import VersionedCache

    storage = SqlStorage(database)
    cache: VersionedCache[object] = VersionedCache(max_entries=2)
    cached = CachedDecisionReads(storage, cache)
    for n in range(5):
        cached.decision_state(f"u-{n}", None)
    assert len(cache) == 2
    cache.clear()
    assert len(cache) == 0


def test_an_identity_miss_reads_ahead_the_state_and_the_owner(database: Database) -> None:
    storage = SqlStorage(database)
    directory = DirectoryService(storage)
    directory.upsert_user(
        DirectoryUser(id="u-d1", username="dee", active=True, source="local", updated_at=T0)
    )
    add_device(database, "d1")
    with storage.unit_of_work() as uow:
        uow.posture.record("d1", _posture(0), received_at=T0, history_length=3)
    cached = CachedDecisionReads(storage)
    identity = cached.identity("d1")
    assert identity is not None and identity.device.id == "d1"
    assert cached.identity("nope") is None
    with _Statements(database) as seen:  # state and owner were read with the identity
        state = cached.decision_state("u-d1", "d1")
    assert seen.count == 1  # the version read only
    assert state == StoreDecisionReads(storage).decision_state("u-d1", "d1")
    # A write to the device (any watched table) is seen by the next identity read.
    with database.transaction() as conn:
        conn.execute(update(devices).where(devices.c.id == "d1").values(status="wiped"))
    again = cached.identity("d1")
    assert again is not None and again.device.status.value == "wiped"
