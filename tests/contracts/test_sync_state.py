"""Contract of :mod:`mdm_core.storage.sync_state` (entries, cursors, leases) on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mdm_core.storage.directory import MemberKind
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage
from mdm_core.storage.sync_state import SourceEntry

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def storage(database: Database) -> SqlStorage:
    return SqlStorage(database)


def test_entries_put_replace_and_remove(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        assert uow.source_entries.entries("ldap") == {}
        uow.source_entries.put(
            "ldap",
            [
                SourceEntry("u1", MemberKind.USER, "cn=a,dc=x"),
                SourceEntry("g1", MemberKind.GROUP, "cn=g,dc=x"),
            ],
        )
        uow.source_entries.put("other", [SourceEntry("u1", MemberKind.USER, "cn=o,dc=x")])
    with storage.unit_of_work() as uow:
        uow.source_entries.put("ldap", [SourceEntry("u1", MemberKind.USER, "cn=renamed,dc=x")])
    with storage.unit_of_work() as uow:
        entries = uow.source_entries.entries("ldap")
        assert entries["u1"].key == "cn=renamed,dc=x" and entries["g1"].kind is MemberKind.GROUP
        assert uow.source_entries.remove("ldap", ["u1", "unknown"]) == 1
        assert set(uow.source_entries.entries("ldap")) == {"g1"}
        assert uow.source_entries.entries("other")["u1"].key == "cn=o,dc=x"


def test_cursor_is_created_then_moved(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        assert uow.sync_cursors.get("ldap") is None
        first = uow.sync_cursors.put("ldap", "100", at=T0, full=True)
        assert first.cursor == "100" and first.last_full_at == T0
    with storage.unit_of_work() as uow:
        moved = uow.sync_cursors.put("ldap", "150", at=T0 + timedelta(minutes=5))
    assert moved.cursor == "150" and moved.last_full_at == T0  # an incremental keeps it
    assert moved.updated_at == T0 + timedelta(minutes=5)


def test_a_lease_has_one_holder_until_it_expires(storage: SqlStorage) -> None:
    ttl = timedelta(minutes=10)
    with storage.unit_of_work() as uow:
        assert uow.leases.acquire("job", "a", now=T0, ttl=ttl)
        assert not uow.leases.acquire("job", "b", now=T0 + timedelta(minutes=1), ttl=ttl)
        assert uow.leases.acquire("job", "a", now=T0 + timedelta(minutes=2), ttl=ttl)  # renew
        assert not uow.leases.acquire("job", "b", now=T0 + timedelta(minutes=11), ttl=ttl)
        assert uow.leases.acquire("job", "b", now=T0 + timedelta(minutes=13), ttl=ttl)
        assert uow.leases.holders()["job"][0] == "b"
        assert not uow.leases.release("job", "a")
        assert uow.leases.release("job", "b")
        assert uow.leases.holders() == {}
        with pytest.raises(ValueError):
            uow.leases.acquire("job", "a", now=T0, ttl=timedelta(0))


def test_two_connections_racing_for_a_new_lease_get_one_winner(database: Database) -> None:
    a, b = SqlStorage(database), SqlStorage(database)
    with a.unit_of_work() as uow:
        won_a = uow.leases.acquire("race", "a", now=T0, ttl=timedelta(minutes=5))
    with b.unit_of_work() as uow:
        won_b = uow.leases.acquire("race", "b", now=T0, ttl=timedelta(minutes=5))
    assert (won_a, won_b) == (True, False)
