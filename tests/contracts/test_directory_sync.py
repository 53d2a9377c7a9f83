"""Contract of a directory source sync (:func:`mdm_core.directory.sync.sync_source`) and the
mirror's ``list`` reads, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mdm_core.directory.mirror import effective_group_names, user_context
from mdm_core.directory.sync import SourceGroup, SourceUser, sync_source
from mdm_core.domain.errors import Conflict
from mdm_core.storage.directory import DirectoryGroup, DirectoryUser
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def storage(database: Database) -> SqlStorage:
    return SqlStorage(database)


def _sync(storage: SqlStorage, users, groups=(), **kw):
    return sync_source(storage, "import", users, groups, clock=lambda: T0, **kw)


def _snapshot(storage: SqlStorage) -> tuple:
    with storage.unit_of_work() as uow:
        users = uow.directory_users.list()
        groups = uow.directory_groups.list()
        members = uow.memberships.members([g.id for g in groups])
        events = len(uow.outbox.fetch_unpublished(10_000))
    return users, groups, members, events


BOB = SourceUser(id="u-bob", username="bob", email="bob@example.com", groups=("payroll",))
CAROL = SourceUser(id="u-carol", username="carol", groups=("finance",))
PAYROLL = SourceGroup(name="payroll", groups=("finance",))


def test_users_and_nested_groups_appear_and_a_second_run_changes_nothing(
    storage: SqlStorage,
) -> None:
    first = _sync(storage, [BOB, CAROL], [PAYROLL])
    assert sorted(first.added) == ["u-bob", "u-carol"]
    assert sorted(first.groups_added) == ["finance", "payroll"]
    with storage.unit_of_work() as uow:
        assert effective_group_names(uow, "u-bob") == {"payroll", "finance"}
        assert effective_group_names(uow, "u-carol") == {"finance"}
        bob = uow.directory_users.get("u-bob")
    assert bob is not None and bob.source == "import" and bob.email == "bob@example.com"
    before = _snapshot(storage)
    again = _sync(storage, [BOB, CAROL], [PAYROLL])
    assert again.added == [] and again.changed == [] and not again.touched
    assert sorted(again.unchanged) == ["u-bob", "u-carol"]
    after = _snapshot(storage)
    assert after[:3] == before[:3]
    assert after[3] == before[3]  # no membership event the second time


def test_changes_are_reported_and_memberships_follow_the_file(storage: SqlStorage) -> None:
    _sync(storage, [BOB, CAROL], [PAYROLL])
    moved = SourceUser(id="u-bob", username="bob", email="bob@example.com", groups=("finance",))
    summary = _sync(storage, [moved, CAROL], [PAYROLL])
    assert summary.changed == ["u-bob"] and summary.unchanged == ["u-carol"]
    assert summary.memberships_added == 1 and summary.memberships_removed == 1
    with storage.unit_of_work() as uow:
        assert effective_group_names(uow, "u-bob") == {"finance"}


def test_prune_disables_users_no_longer_listed_and_relisting_enables(storage: SqlStorage) -> None:
    _sync(storage, [BOB, CAROL])
    kept = _sync(storage, [BOB])  # without prune nothing is disabled
    assert kept.disabled == []
    pruned = _sync(storage, [BOB], prune=True)
    assert pruned.disabled == ["u-carol"]
    with storage.unit_of_work() as uow:
        ctx = user_context(uow, "u-carol")
        assert ctx is not None and ctx.active is False
    back = _sync(storage, [BOB, CAROL], prune=True)
    assert back.changed == ["u-carol"]
    with storage.unit_of_work() as uow:
        ctx = user_context(uow, "u-carol")
        assert ctx is not None and ctx.active is True


def test_other_sources_are_never_touched(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        uow.directory_users.upsert(
            DirectoryUser(id="u-bob", username="bob", active=True, source="ldap", updated_at=T0)
        )
        uow.directory_users.upsert(
            DirectoryUser(id="u-dan", username="dan", active=True, source="ldap", updated_at=T0)
        )
        uow.directory_groups.upsert(
            DirectoryGroup(id="g-fin", name="finance", source="ldap", updated_at=T0)
        )
    summary = _sync(
        storage,
        [SourceUser(id="u-bob", username="bob", active=False), CAROL],
        [SourceGroup(name="finance", groups=("everyone",))],
        prune=True,
    )
    assert "u-bob (owned by ldap)" in summary.skipped
    assert "group finance (owned by ldap)" in summary.skipped
    assert summary.disabled == []  # dan is ldap's, not this source's
    with storage.unit_of_work() as uow:
        bob = uow.directory_users.get("u-bob")
        dan = uow.directory_users.get("u-dan")
        # carol joins the existing ldap group by name; the group itself is unchanged
        assert effective_group_names(uow, "u-carol") == {"finance"}
        assert uow.directory_groups.list("ldap")[0].source == "ldap"
        assert effective_group_names(uow, "u-bob") == set()
    assert bob is not None and bob.active and bob.source == "ldap"
    assert dan is not None and dan.active


def test_takes_over_claims_a_lower_source(storage: SqlStorage) -> None:
    sync_source(storage, "users_file", [SourceUser(id="u-bob", username="bob")])
    summary = _sync(storage, [BOB], takes_over=("users_file",))
    assert summary.changed == ["u-bob"]
    with storage.unit_of_work() as uow:
        bob = uow.directory_users.get("u-bob")
        assert bob is not None and bob.source == "import"
    # and the users file's own prune no longer sees it
    gone = sync_source(storage, "users_file", [], prune=True)
    assert gone.disabled == []


def test_a_conflict_writes_nothing(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        uow.directory_users.upsert(
            DirectoryUser(id="u-x", username="carol", active=True, source="ldap", updated_at=T0)
        )
    before = _snapshot(storage)
    with pytest.raises(Conflict, match="carol"):
        _sync(storage, [BOB, CAROL], [PAYROLL])  # carol's username belongs to u-x
    assert _snapshot(storage) == before


@pytest.mark.parametrize(
    "users",
    [
        [BOB, SourceUser(id="u-bob", username="bobby")],
        [BOB, SourceUser(id="u-other", username="bob")],
    ],
)
def test_duplicates_in_the_input_are_refused(storage: SqlStorage, users) -> None:
    before = _snapshot(storage)
    with pytest.raises(Conflict, match="listed twice"):
        _sync(storage, users)
    assert _snapshot(storage) == before


def test_an_import_is_audited(storage: SqlStorage) -> None:
    sync_source(storage, "import", [BOB], actor="admin:root", clock=lambda: T0)
    sync_source(storage, "import", [BOB], actor="admin:root", clock=lambda: T0)
    with storage.unit_of_work() as uow:
        entries = [e for e in uow.audit.recent("import") if e.action == "directory.sync"]
    assert len(entries) == 2 and entries[0].actor == "admin:root"
    assert entries[0].detail["unchanged"] == 1 and entries[1].detail["added"] == 1


def test_list_reads_by_source_sorted(storage: SqlStorage) -> None:
    assert _snapshot(storage)[0] == []
    sync_source(
        storage, "a", [SourceUser(id="2", username="zed"), SourceUser(id="1", username="amy")]
    )
    sync_source(storage, "b", [SourceUser(id="3", username="bea", groups=("g",))])
    with storage.unit_of_work() as uow:
        assert [u.username for u in uow.directory_users.list()] == ["amy", "bea", "zed"]
        assert [u.username for u in uow.directory_users.list("a")] == ["amy", "zed"]
        assert uow.directory_users.list("none") == []
        assert [g.name for g in uow.directory_groups.list("b")] == ["g"]
        assert uow.directory_groups.list("a") == []


def test_a_new_group_never_takes_over_an_existing_group_id(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        uow.directory_groups.upsert(
            DirectoryGroup(id="payroll", name="Payroll (HR)", source="ldap", updated_at=T0)
        )
    _sync(storage, [BOB])  # bob's group "payroll" is a new name whose default id is taken
    with storage.unit_of_work() as uow:
        ldap = uow.directory_groups.get("payroll")
        ours = uow.directory_groups.find_by_name("payroll")
        assert effective_group_names(uow, "u-bob") == {"payroll"}
    assert ldap is not None and ldap.name == "Payroll (HR)" and ldap.source == "ldap"
    assert ours is not None and ours.id == "import:payroll" and ours.source == "import"


def test_skip_conflicts_keeps_only_the_conflicting_user_out(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        uow.directory_users.upsert(
            DirectoryUser(id="u-x", username="carol", active=True, source="ldap", updated_at=T0)
        )
    summary = _sync(storage, [BOB, CAROL], skip_conflicts=True)
    assert summary.added == ["u-bob"]
    assert summary.skipped == ["u-carol (username carol belongs to u-x)"]
    with storage.unit_of_work() as uow:
        assert uow.directory_users.get("u-carol") is None
        holder = uow.directory_users.get("u-x")
    assert holder is not None and holder.source == "ldap"
