"""Contract of ScimResourceStore on SQLite and PostgreSQL: insert, optimistic replace by
version, unique name per type, per-client listing, delete; and the SCIM service's writes
through the mirror (account events, credential revocation) on both backends."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from idp_connectors.scim.errors import PreconditionFailed, Uniqueness
from idp_connectors.scim.resources import ScimService
from idp_connectors.scim.schemas import GROUP_KIND, PATCH_OP, USER, USER_KIND
from mdm_core.bus.events import EventType
from mdm_core.domain.errors import Conflict
from mdm_core.storage.scim import ScimResource
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _res(rid: str, name: str, client: str = "okta", version: int = 1) -> ScimResource:
    return ScimResource(
        resource_type="User",
        id=rid,
        client=client,
        name_key=name,
        external_id=None,
        version=version,
        created=T0,
        last_modified=T0 + timedelta(seconds=version),
        document={"userName": name, "name": {"givenName": "Ann"}},
    )


@pytest.fixture
def storage(database: Database) -> SqlStorage:
    return SqlStorage(database)


def test_insert_get_list_delete(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        assert uow.scim_resources.get("User", "u1") is None
        assert uow.scim_resources.list("User", "okta") == []
        uow.scim_resources.put(_res("u1", "ann"), expected_version=None)
        uow.scim_resources.put(_res("u2", "bob", client="entra"), expected_version=None)
    with storage.unit_of_work() as uow:
        assert uow.scim_resources.get("User", "u1") == _res("u1", "ann")
        assert uow.scim_resources.get("Group", "u1") is None  # per type
        assert uow.scim_resources.find_by_name("User", "ann") == _res("u1", "ann")
        assert uow.scim_resources.find_by_name("User", "nobody") is None
        assert [r.id for r in uow.scim_resources.list("User", "okta")] == ["u1"]
        assert uow.scim_resources.delete("User", "u1") is True
        assert uow.scim_resources.delete("User", "u1") is False
        assert uow.scim_resources.get("User", "u1") is None


def test_replace_needs_the_current_version(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        uow.scim_resources.put(_res("u1", "ann"), expected_version=None)
    with storage.unit_of_work() as uow:
        uow.scim_resources.put(_res("u1", "ann", version=2), expected_version=1)
    with pytest.raises(Conflict), storage.unit_of_work() as uow:  # a stale writer
        uow.scim_resources.put(_res("u1", "ann-stale", version=2), expected_version=1)
    with pytest.raises(Conflict), storage.unit_of_work() as uow:  # unknown id
        uow.scim_resources.put(_res("nope", "x", version=2), expected_version=1)
    with storage.unit_of_work() as uow:
        assert uow.scim_resources.get("User", "u1") == _res("u1", "ann", version=2)


def test_name_and_id_are_unique_per_type(storage: SqlStorage) -> None:
    with storage.unit_of_work() as uow:
        uow.scim_resources.put(_res("u1", "ann"), expected_version=None)
    with pytest.raises(Conflict), storage.unit_of_work() as uow:
        uow.scim_resources.put(_res("u2", "ann"), expected_version=None)
    with pytest.raises(Conflict), storage.unit_of_work() as uow:
        uow.scim_resources.put(_res("u1", "other"), expected_version=None)
    with storage.unit_of_work() as uow:  # the same name as a Group is fine
        uow.scim_resources.put(
            replace(_res("g1", "ann"), resource_type="Group"), expected_version=None
        )
        assert [r.id for r in uow.scim_resources.list("User", "okta")] == ["u1"]


def _patch(*ops: dict[str, object]) -> dict[str, object]:
    return {"schemas": [PATCH_OP], "Operations": list(ops)}


def test_service_writes_mirror_events_and_audit(storage: SqlStorage) -> None:
    service = ScimService(storage, "https://gw.example/scim/v2", clock=lambda: T0)
    user = service.create(
        USER_KIND, "okta", {"schemas": [USER], "userName": "Ann@Example.com", "active": True}
    )
    with storage.unit_of_work() as uow:
        mirrored = uow.directory_users.get(user["id"])
        assert mirrored is not None and mirrored.source == "scim:okta" and mirrored.active
    with pytest.raises(Uniqueness):  # case-insensitive, across clients
        service.create(USER_KIND, "entra", {"schemas": [USER], "userName": "ann@example.COM"})
    with pytest.raises(PreconditionFailed):
        service.patch(
            USER_KIND,
            "okta",
            user["id"],
            _patch({"op": "replace", "value": {"active": False}}),
            'W/"9"',
        )
    with storage.unit_of_work() as uow:
        assert uow.directory_users.get(user["id"]).active  # type: ignore[union-attr]
    service.patch(
        USER_KIND,
        "okta",
        user["id"],
        _patch({"op": "replace", "value": {"active": False}}),
        'W/"1"',
    )
    group = service.create(
        GROUP_KIND,
        "okta",
        {
            "schemas": [GROUP_KIND.core.id],
            "displayName": "Finance",
            "members": [{"value": user["id"]}],
        },
    )
    service.delete(USER_KIND, "okta", user["id"], None)
    with storage.unit_of_work() as uow:
        assert uow.directory_users.get(user["id"]) is None
        assert uow.memberships.members([group["id"]]) == []
        types = [e.event.type for e in uow.outbox.fetch_unpublished(100)]
        subject = f"user:{user['id']}"
        entries = uow.audit.recent(subject) + uow.audit.recent(f"group:{group['id']}")
        actions = {(a.actor, a.action) for a in entries}
    assert EventType.ACCOUNT_DISABLED in types and EventType.ACCOUNT_DELETED in types
    assert types.count(EventType.GROUP_MEMBERSHIP_CHANGED) == 2  # added, then removed
    assert {
        ("scim:okta", "scim.user.create"),
        ("scim:okta", "scim.user.patch"),
        ("scim:okta", "scim.group.create"),
        ("scim:okta", "scim.user.delete"),
        ("scim:okta", "credentials.revoked"),
    } <= actions


def test_a_scim_group_change_is_a_user_groups_changed_event(storage: SqlStorage) -> None:
    """Membership pushed by SCIM reaches the access read model and device convergence the way
    every other source's does: one ``directory.user_groups_changed`` per affected user."""
    service = ScimService(storage, "https://gw.example/scim/v2", clock=lambda: T0)
    user = service.create(USER_KIND, "entra", {"schemas": [USER], "userName": "bo@example.com"})
    group = service.create(
        GROUP_KIND, "entra", {"schemas": [GROUP_KIND.core.id], "displayName": "Marketing"}
    )

    def changes() -> list[dict[str, object]]:
        with storage.unit_of_work() as uow:
            return [
                e.event.payload
                for e in uow.outbox.fetch_unpublished(100)
                if e.event.type == EventType.USER_GROUPS_CHANGED
            ]

    assert changes() == []
    service.patch(
        GROUP_KIND,
        "entra",
        group["id"],
        _patch({"op": "add", "path": "members", "value": [{"value": user["id"]}]}),
        None,
    )
    [added] = changes()
    assert added["user_id"] == user["id"] and added["added"] == ["Marketing"]
    assert added["cause"] == "scim:entra"
    service.patch(  # Entra's remove by filter path
        GROUP_KIND,
        "entra",
        group["id"],
        _patch({"op": "remove", "path": f'members[value eq "{user["id"]}"]'}),
        None,
    )
    assert len(changes()) == 2 and changes()[-1]["removed"] == ["Marketing"]
    service.delete(GROUP_KIND, "entra", group["id"], None)
    assert len(changes()) == 2  # the group was already empty: nobody's groups changed
