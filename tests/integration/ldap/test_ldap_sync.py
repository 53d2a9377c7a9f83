"""LDAP/AD sync against a real slapd: full and incremental syncs, nesting, disabled and deleted
accounts (published as events), renames, and the idempotence of a repeated full sync."""

from __future__ import annotations

from collections.abc import Callable

from idp_connectors.ldap import LdapSync
from mdm_core.bus.events import EventType
from mdm_core.directory.mirror import effective_group_names, user_context
from mdm_core.directory.precedence import SourceOfTruth
from mdm_core.directory.sync import SourceUser, sync_source
from mdm_core.storage.sql.uow import SqlStorage
from tests.helpers.ldap_data import DEPTH, TRICKY_NAMES, DirectoryData, Writer
from tests.integration.ldap.conftest import BIG_GROUPS, BIG_USERS, settings_for
from tests.slapd import PrivateSlapd


def _events(storage: SqlStorage, kind: str) -> list[str]:
    with storage.unit_of_work() as uow:
        return [
            e.event.subject for e in uow.outbox.fetch_unpublished(100_000) if e.event.type == kind
        ]


def _check_mirror(storage: SqlStorage, data: DirectoryData) -> None:
    with storage.unit_of_work() as uow:
        for person in data.people:
            ctx = user_context(uow, str(person.guid))
            assert ctx is not None, person.dn
            assert ctx.active is not person.disabled
            assert set(ctx.groups) == data.effective_groups(person.dn), person.dn


def _big(slapd: PrivateSlapd, storage: SqlStorage, data: DirectoryData) -> None:
    sync = LdapSync(settings_for(slapd, data), storage)
    first = sync.run()
    assert first.mode == "full"
    assert first.users_read == BIG_USERS and first.groups_read == BIG_GROUPS
    assert len(first.added) == BIG_USERS and first.groups_added == BIG_GROUPS
    assert first.skipped == []
    _check_mirror(storage, data)
    # Nesting is DEPTH deep: a user of the deepest chain group is in every group above it.
    chain_user = next(p for p in data.people if p.dn in data.teams[DEPTH - 1].members)
    with storage.unit_of_work() as uow:
        names = effective_group_names(uow, str(chain_user.guid))
    assert {t.name for t in data.teams[:DEPTH]} <= names
    # The cycle's members see both groups of the cycle, and resolution terminated.
    cycle_user = next(p for p in data.people if p.dn in data.teams[-1].members)
    with storage.unit_of_work() as uow:
        names = effective_group_names(uow, str(cycle_user.guid))
    assert {data.teams[-1].name, data.teams[-2].name} <= names
    # DNs that need escaping were matched to their group memberships.
    for tricky in data.people[: len(TRICKY_NAMES)]:
        with storage.unit_of_work() as uow:
            assert effective_group_names(uow, str(tricky.guid)), tricky.dn
    # A second full sync of an unchanged directory writes nothing.
    with storage.unit_of_work() as uow:
        outbox_before = len(uow.outbox.fetch_unpublished(100_000))
    again = sync.run(full=True)
    assert again.counts() | {"users_read": 0, "groups_read": 0} == dict.fromkeys(again.counts(), 0)
    with storage.unit_of_work() as uow:
        assert len(uow.outbox.fetch_unpublished(100_000)) == outbox_before
    # Nothing changed since: the incremental sync reads nothing.
    nothing = sync.run()
    assert nothing.mode == "incremental" and nothing.users_read == 0


def test_big_ad_like_directory_full_sync(
    slapd: PrivateSlapd, storage: SqlStorage, big_ad: DirectoryData
) -> None:
    _big(slapd, storage, big_ad)


def test_big_openldap_directory_full_sync(
    slapd: PrivateSlapd, storage: SqlStorage, big_ol: DirectoryData
) -> None:
    _big(slapd, storage, big_ol)


def test_incremental_sync_follows_disables_and_memberships_and_publishes_events(
    make_sync: Callable[..., LdapSync], storage: SqlStorage, small: DirectoryData, writer: Writer
) -> None:
    make_sync(small).run()
    _check_mirror(storage, small)
    already_disabled = set(_events(storage, EventType.ACCOUNT_DISABLED))
    assert already_disabled == set()  # the first sync creates disabled users; none *became* so
    victim = next(p for p in small.people if not p.disabled)
    mover = next(p for p in small.people if p is not victim and not p.disabled)
    writer.set_disabled(victim, True)
    target = next(t for t in small.teams if mover.dn not in t.members)
    writer.add_member(target, mover.dn)
    old = next(t for t in small.teams if mover.dn in t.members and t is not target)
    writer.remove_member(old, mover.dn)
    result = make_sync(small).run()  # a new instance: the cursor is read from the database
    assert result.mode == "incremental"
    assert result.disabled == [str(victim.guid)]
    assert set(result.changed) >= {str(victim.guid), str(mover.guid)}
    _check_mirror(storage, small)
    assert _events(storage, EventType.ACCOUNT_DISABLED) == [str(victim.guid)]
    # Enabling again is an ordinary change (no offboarding event).
    writer.set_disabled(victim, False)
    make_sync(small).run()
    _check_mirror(storage, small)
    assert _events(storage, EventType.ACCOUNT_DISABLED) == [str(victim.guid)]


def test_deletion_is_detected_by_a_full_sync_only(
    make_sync: Callable[..., LdapSync], storage: SqlStorage, small: DirectoryData, writer: Writer
) -> None:
    make_sync(small).run()
    gone = next(p for p in small.people if not p.disabled)
    writer.delete_user(gone)
    incremental = make_sync(small).run()
    assert incremental.mode == "incremental" and incremental.deleted == []
    with storage.unit_of_work() as uow:
        record = uow.directory_users.get(str(gone.guid))
    assert record is not None and record.active  # an incremental read cannot see a deletion
    assert _events(storage, EventType.ACCOUNT_DELETED) == []
    full = make_sync(small).run(full=True)
    assert full.deleted == [str(gone.guid)]
    with storage.unit_of_work() as uow:
        record = uow.directory_users.get(str(gone.guid))
        assert uow.source_entries.entries("ldap").get(str(gone.guid)) is None
    assert record is not None and not record.active  # disabled, never erased
    assert _events(storage, EventType.ACCOUNT_DELETED) == [str(gone.guid)]
    _check_mirror(storage, small)
    # Repeating the full sync publishes nothing more.
    make_sync(small).run(full=True)
    assert _events(storage, EventType.ACCOUNT_DELETED) == [str(gone.guid)]


def test_a_renamed_entry_keeps_its_mirror_record(
    make_sync: Callable[..., LdapSync], storage: SqlStorage, small: DirectoryData, writer: Writer
) -> None:
    make_sync(small).run()
    person = next(p for p in small.people[len(TRICKY_NAMES) :] if not p.disabled)
    before = small.direct_groups(person.dn)
    rdn = "cn=Renamed\\, Person (moved)" if small.flavor == "ad" else "uid=renamed-user"
    new_dn = writer.rename_user(person, rdn)
    result = make_sync(small).run()
    assert result.added == []
    with storage.unit_of_work() as uow:
        ids = {u.id for u in uow.directory_users.list("ldap")}
        entry = uow.source_entries.entries("ldap")[str(person.guid)]
    assert str(person.guid) in ids and len(ids) == len(small.people)
    assert small.direct_groups(new_dn) == before
    assert "renamed" in entry.key
    _check_mirror(storage, small)
    # A full sync afterwards agrees: nothing added, nothing deleted.
    full = make_sync(small).run(full=True)
    assert full.added == [] and full.deleted == []


def test_the_stored_cursor_survives_a_new_process(
    make_sync: Callable[..., LdapSync], storage: SqlStorage, small: DirectoryData
) -> None:
    first = make_sync(small).run()
    with storage.unit_of_work() as uow:
        stored = uow.sync_cursors.get("ldap")
    assert stored is not None and stored.cursor == first.cursor and stored.last_full_at
    second = make_sync(small).run()
    assert second.mode == "incremental" and second.cursor == first.cursor


def test_the_ldap_sync_follows_the_configured_source_of_truth(
    slapd: PrivateSlapd, storage: SqlStorage, small: DirectoryData
) -> None:
    """With ``directory.source_of_truth`` set, an LDAP sync is one source among several: the
    groups another source outranks it for are kept, and the sync says what it was refused."""
    truth = SourceOfTruth.parse({"groups": ["hr", "ldap"]})
    LdapSync(settings_for(slapd, small), storage, source_of_truth=truth).run(full=True)
    person = next(p for p in small.people[len(TRICKY_NAMES) :] if not p.disabled)
    user_id = str(person.guid)
    with storage.unit_of_work() as uow:
        user = uow.directory_users.get(user_id)
    assert user is not None
    hr = sync_source(
        storage,
        "hr",
        [SourceUser(id=user_id, username=user.username, groups=("hr-chosen",))],
        source_of_truth=truth,
    )
    assert [o.winner for o in hr.overrode if o.attribute == "groups"] == ["hr"]
    with storage.unit_of_work() as uow:
        assert effective_group_names(uow, user_id) == {"hr-chosen"}
    again = LdapSync(settings_for(slapd, small), storage, source_of_truth=truth).run(full=True)
    with storage.unit_of_work() as uow:
        assert effective_group_names(uow, user_id) == {"hr-chosen"}  # hr outranks ldap
    assert user_id not in again.deleted and user_id not in again.disabled
