"""Contract of the directory mirror stores and service on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mdm_core.bus.events import EventType
from mdm_core.directory.mirror import (
    DirectoryService,
    effective_group_ids,
    effective_group_names,
    transitive_user_members,
    user_context,
)
from mdm_core.domain.errors import Conflict, NotFound
from mdm_core.storage.directory import DirectoryGroup, DirectoryUser, MemberKind, Membership
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage

T0 = datetime(2026, 1, 1, tzinfo=UTC)
U, G = MemberKind.USER, MemberKind.GROUP


def _user(uid: str, *, active: bool = True, username: str | None = None) -> DirectoryUser:
    return DirectoryUser(
        id=uid, username=username or uid, active=active, source="local", updated_at=T0
    )


def _group(gid: str, name: str | None = None) -> DirectoryGroup:
    return DirectoryGroup(id=gid, name=name or gid, source="local", updated_at=T0)


@pytest.fixture
def storage(database: Database) -> SqlStorage:
    return SqlStorage(database)


@pytest.fixture
def service(storage: SqlStorage) -> DirectoryService:
    return DirectoryService(storage, clock=lambda: T0)


def _events(storage: SqlStorage) -> list:
    with storage.unit_of_work() as uow:
        return [e.event for e in uow.outbox.fetch_unpublished(1000)]


def test_user_upsert_get_and_change_detection(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        assert uow.directory_users.get("alice") is None
        assert uow.directory_users.upsert(_user("alice")) is True
        assert uow.directory_users.upsert(_user("alice")) is False  # nothing changed
        changed = DirectoryUser("alice", "alice", True, "ldap", T0, email="a@example.com")
        assert uow.directory_users.upsert(changed) is True
    with storage.unit_of_work() as uow:
        got = uow.directory_users.get("alice")
        assert got == changed
        assert got is not None and got.updated_at.tzinfo is not None
        assert uow.directory_users.find_by_username("alice") == changed
        assert uow.directory_users.find_by_username("nobody") is None


def test_username_taken_by_another_user_is_a_conflict(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        uow.directory_users.upsert(_user("u1", username="same"))
    with pytest.raises(Conflict), storage.unit_of_work() as uow:
        uow.directory_users.upsert(_user("u2", username="same"))
    with storage.unit_of_work() as uow:
        assert uow.directory_users.get("u2") is None


def test_set_active_and_unknown_user(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        uow.directory_users.upsert(_user("bob"))
        assert uow.directory_users.set_active("bob", False, at=T0).active is False
    with storage.unit_of_work() as uow:
        ctx = user_context(uow, "bob")
        assert ctx is not None and ctx.active is False
        assert user_context(uow, "ghost") is None
    with pytest.raises(NotFound), storage.unit_of_work() as uow:
        uow.directory_users.set_active("ghost", True, at=T0)


def test_group_upsert_names_conflict_and_delete(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        assert uow.directory_groups.names() == {}
        assert uow.directory_groups.upsert(_group("g1", "finance")) is True
        assert uow.directory_groups.upsert(_group("g1", "finance")) is False
        uow.directory_groups.upsert(_group("g2", "marketing"))
        assert uow.directory_groups.names() == {"g1": "finance", "g2": "marketing"}
        assert uow.directory_groups.names(["g2", "nope"]) == {"g2": "marketing"}
        assert uow.directory_groups.find_by_name("finance") == _group("g1", "finance")
    with pytest.raises(Conflict), storage.unit_of_work() as uow:
        uow.directory_groups.upsert(_group("g3", "finance"))
    with storage.unit_of_work() as uow:
        uow.memberships.add(Membership("g1", "g2", G))
        uow.memberships.add(Membership("g2", "alice", U))
        assert uow.directory_groups.delete("g2") is True
        assert uow.directory_groups.delete("g2") is False
        assert uow.memberships.members(["g1", "g2"]) == []


def test_membership_add_remove_and_unknown_group(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        uow.directory_groups.upsert(_group("g1"))
        m = Membership("g1", "alice", U)
        assert uow.memberships.add(m) is True
        assert uow.memberships.add(m) is False
        assert uow.memberships.members(["g1"]) == [m]
        assert uow.memberships.parents(U, ["alice"]) == [m]
        assert uow.memberships.parents(G, ["alice"]) == []  # kind matters
        assert uow.memberships.remove(m) is True
        assert uow.memberships.remove(m) is False
        assert uow.memberships.members([]) == []
    with pytest.raises(NotFound), storage.unit_of_work() as uow:
        uow.memberships.add(Membership("no-such-group", "alice", U))


def test_nested_groups_resolve_transitively(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        for gid in ("all", "finance", "payroll", "other"):
            uow.directory_groups.upsert(_group(gid))
        uow.memberships.add(Membership("payroll", "alice", U))
        uow.memberships.add(Membership("finance", "payroll", G))
        uow.memberships.add(Membership("all", "finance", G))
        uow.memberships.add(Membership("other", "bob", U))
    with storage.unit_of_work() as uow:
        assert effective_group_ids(uow, "alice") == {"payroll", "finance", "all"}
        assert effective_group_names(uow, "bob") == {"other"}
        assert effective_group_ids(uow, "nobody") == frozenset()
        assert transitive_user_members(uow, "all") == {"alice"}


def test_cycles_are_harmless(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        for gid in ("a", "b", "c"):
            uow.directory_groups.upsert(_group(gid))
        uow.memberships.add(Membership("a", "b", G))
        uow.memberships.add(Membership("b", "c", G))
        uow.memberships.add(Membership("c", "a", G))  # a -> b -> c -> a
        uow.memberships.add(Membership("a", "a", G))  # self loop
        uow.memberships.add(Membership("c", "carol", U))
    with storage.unit_of_work() as uow:
        assert effective_group_ids(uow, "carol") == {"a", "b", "c"}
        assert transitive_user_members(uow, "b") == {"carol"}


def test_membership_changes_emit_outbox_events(
    storage: SqlStorage, service: DirectoryService
) -> None:
    service.upsert_group(_group("finance"))
    service.upsert_group(_group("payroll"))
    service.upsert_user(_user("alice"))
    assert service.add_member("payroll", "alice", U) is True
    assert service.add_member("payroll", "alice", U) is False  # no change, no event
    assert service.add_member("finance", "payroll", G) is True
    assert service.remove_member("finance", "payroll", G) is True
    assert service.remove_member("finance", "payroll", G) is False
    every = _events(storage)
    events = [e for e in every if e.type == EventType.GROUP_MEMBERSHIP_CHANGED]
    assert len(events) == 3
    # Each change that really moved alice's effective groups also says so, per user.
    per_user = [e for e in every if e.type == EventType.USER_GROUPS_CHANGED]
    assert [(e.subject, e.payload["added"], e.payload["removed"]) for e in per_user] == [
        ("alice", ["payroll"], []),
        ("alice", ["finance"], []),
        ("alice", [], ["finance"]),
    ]
    assert per_user[1].payload["before"] == ["payroll"]
    assert per_user[1].payload["after"] == ["finance", "payroll"]
    assert [e.payload["change"] for e in events] == ["added", "added", "removed"]
    assert events[1].payload["affected_users"] == ["alice"]
    assert events[1].payload["group_name"] == "finance"
    assert events[2].payload["affected_users"] == ["alice"]  # computed before removal
    ctx = service.user_context("alice")
    assert ctx is not None and ctx.groups == {"payroll"}


def test_replace_members_is_a_full_sync(storage: SqlStorage, service: DirectoryService) -> None:
    service.upsert_group(_group("g"))
    service.add_member("g", "u1", U)
    service.add_member("g", "u2", U)
    assert service.replace_members("g", [("u2", U), ("u3", U)]) == (1, 1)
    with storage.unit_of_work() as uow:
        assert {m.member_id for m in uow.memberships.members(["g"])} == {"u2", "u3"}
    assert service.group_names() == {"g"}


def test_failed_unit_of_work_writes_neither_membership_nor_event(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        uow.directory_groups.upsert(_group("g"))
    from mdm_core.directory.mirror import add_membership

    with pytest.raises(RuntimeError), storage.unit_of_work() as uow:
        add_membership(uow, Membership("g", "alice", U), at=T0)
        raise RuntimeError("boom")
    with storage.unit_of_work() as uow:
        assert uow.memberships.members(["g"]) == []
    assert _events(storage) == []
