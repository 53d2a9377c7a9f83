"""SCIM writes follow ``directory.source_of_truth`` like every other source.

A user the users file, an import or LDAP already holds is *shared* once a SCIM client
creates the same ``userName``: the SCIM resource takes the mirror user's id, the client's
values become its claims (source ``scim:<client>``, ranked as ``scim``) and the mirror record
is resolved attribute by attribute. Both orders of arrival are covered (SCIM after the sync,
the sync after SCIM), for groups, email and active, with the access decision's input
(what-if, the evaluator's own read) and ``directory.account_disabled`` following the winning
value. The SCIM resource keeps answering what the client wrote; the audit record says what
was overridden.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from idp_connectors.scim.errors import Uniqueness
from idp_connectors.scim.resources import ScimService
from idp_connectors.scim.schemas import USER_KIND
from mdm_core.access.whatif import what_if
from mdm_core.bus.events import EventType
from mdm_core.directory.precedence import SourceOfTruth
from mdm_core.directory.sync import SourceUser, sync_source
from mdm_core.runtime import MdmCore
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage
from posture_gateway.access.device_gate import evaluator
from posture_gateway.app import create_app
from posture_gateway.settings import Settings
from tests.e2e.live_server import POLICY_DIR
from tests.integration.scim_fixtures import (
    GROUP,
    OKTA_TOKEN,
    PUBLIC_URL,
    USER,
    Scim,
    scim_settings,
)

TRUTH = {
    "groups": ["ldap", "scim", "users_file"],
    "email": ["scim", "ldap"],
    "active": ["ldap", "scim"],
}


@pytest.fixture
def app(tmp_path: Path, database: Database) -> Iterator[Flask]:
    """The gateway on SQLite and on PostgreSQL."""
    app = create_app(
        Settings.model_validate(
            {
                "data_dir": tmp_path / "data",
                "database_url": database.url,
                "dev_mode": True,
                "public_url": PUBLIC_URL,
                "policy_dir": POLICY_DIR,
                "scim": scim_settings(tmp_path),
                "directory": {"source_of_truth": TRUTH},
            }
        )
    )
    try:
        yield app
    finally:
        app.extensions["posture"].core.close()


@pytest.fixture
def okta(app: Flask) -> Scim:
    return Scim(app.test_client(), OKTA_TOKEN)


def _core(app: Flask) -> MdmCore:
    core = app.extensions["posture"].core
    assert isinstance(core, MdmCore)
    return core


def _sync(app: Flask, source: str, **user: Any) -> None:
    values: dict[str, Any] = {"id": "u-bob", "username": "bob"} | user
    sync_source(
        _core(app).storage,
        source,
        [SourceUser(**values)],
        source_of_truth=_core(app).directory.source_of_truth,
    )


def _decision_input(app: Flask, user_id: str = "u-bob") -> dict[str, Any]:
    """What the access decision reads about the user (the evaluator's own state read)."""
    with app.app_context():
        result = what_if(
            evaluator(), user_id=user_id, device_id=None, app=None, now=datetime.now(UTC)
        )
    user = result["input"]["user"]
    assert isinstance(user, dict)
    return user


def _record(app: Flask) -> Any:
    with _core(app).storage.unit_of_work() as uow:
        return uow.directory_users.get("u-bob")


def _events(app: Flask, kind: str) -> list[dict[str, Any]]:
    with _core(app).storage.unit_of_work() as uow:
        return [
            e.event.payload | {"subject": e.event.subject}
            for e in uow.outbox.fetch_unpublished(1000)
            if e.event.type == kind
        ]


def _audit(app: Flask, action: str) -> list[dict[str, Any]]:
    with _core(app).storage.unit_of_work() as uow:
        return [a.detail for a in uow.audit.recent("user:u-bob") if a.action == action]


def _deactivate(okta: Scim) -> Any:
    return okta.patch("/Users/u-bob", {"op": "replace", "path": "active", "value": False})


def test_scim_after_ldap_links_the_user_and_loses_what_ldap_owns(app: Flask, okta: Scim) -> None:
    _sync(app, "ldap", email="bob@ldap", groups=("finance",))
    created = okta.user("bob", emails=[{"value": "bob@scim", "primary": True}])
    assert created["id"] == "u-bob"  # the SCIM resource is the user LDAP holds
    assert _record(app).email == "bob@scim"  # email: scim ranks first
    assert _record(app).source == "ldap"  # the record keeps its creator

    # groups: ldap ranks above scim -> the client's group is its own view only
    group = okta.call(
        "POST",
        "/Groups",
        {
            "schemas": [GROUP],
            "displayName": "sales",
            "members": [{"value": "u-bob", "type": "User"}],
        },
    )
    assert group.status_code == 201
    assert group.json["members"][0]["value"] == "u-bob"  # what the client wrote
    assert _decision_input(app)["groups"] == ["finance"]
    assert [g["display"] for g in okta.call("GET", "/Users/u-bob").json["groups"]] == ["sales"]

    # active: ldap ranks above scim -> a SCIM deactivation is overridden, access stays
    patched = _deactivate(okta)
    assert patched.status_code == 200 and patched.json["active"] is False  # as written
    assert _decision_input(app)["active"] is True
    assert _events(app, EventType.ACCOUNT_DISABLED) == []
    overridden = _audit(app, "scim.user.patch")[0]["overridden"]
    assert sorted((o["attribute"], o["winner"], o["loser"]) for o in overridden) == [
        ("active", "ldap", "scim:okta"),
        ("email", "scim:okta", "ldap"),
        ("groups", "ldap", "scim:okta"),
    ]

    # the other order: LDAP writes after SCIM; its email still loses, its disable wins
    _sync(app, "ldap", email="bob@ldap2", groups=("finance",), active=False)
    assert _record(app).email == "bob@scim"
    assert _decision_input(app) == {
        "id": "u-bob",
        "known": True,
        "active": False,
        "groups": ["finance"],
    }
    disabled = _events(app, EventType.ACCOUNT_DISABLED)
    assert [(e["subject"], e["source"]) for e in disabled] == [("u-bob", "ldap")]


def test_scim_group_wins_over_the_users_file_and_scim_disables(app: Flask, okta: Scim) -> None:
    _sync(app, "users_file", email="bob@file", groups=("marketing",))
    okta.user("bob")
    okta.call(
        "POST",
        "/Groups",
        {"schemas": [GROUP], "displayName": "finance", "members": [{"value": "u-bob"}]},
    )
    # groups: scim ranks above users_file
    assert _decision_input(app)["groups"] == ["finance"]
    changed = _events(app, EventType.USER_GROUPS_CHANGED)
    assert changed[-1]["after"] == ["finance"] and changed[-1]["removed"] == ["marketing"]
    # email: the client wrote none, and scim ranks first: no value is its claim too
    assert _record(app).email is None

    # active: scim is listed, users_file is not -> SCIM's deactivation wins
    assert _deactivate(okta).status_code == 200
    assert _decision_input(app)["active"] is False
    disabled = _events(app, EventType.ACCOUNT_DISABLED)
    assert [(e["subject"], e["source"], e["actor"]) for e in disabled] == [
        ("u-bob", "scim:okta", "scim:okta")
    ]
    # the other order: the users file re-syncs the account as active and loses
    _sync(app, "users_file", email="bob@file", groups=("marketing",), active=True)
    assert _decision_input(app) == {
        "id": "u-bob",
        "known": True,
        "active": False,
        "groups": ["finance"],
    }

    # the client removes bob from its group: SCIM now says "no groups", and still wins
    gid = okta.call("GET", '/Groups?filter=displayName eq "finance"').json["Resources"][0]["id"]
    okta.patch(f"/Groups/{gid}", {"op": "remove", "path": 'members[value eq "u-bob"]'})
    assert _decision_input(app)["groups"] == []
    assert "members" not in okta.call("GET", f"/Groups/{gid}").json


def test_scim_delete_of_a_shared_user_withdraws_only_the_clients_claims(
    app: Flask, okta: Scim
) -> None:
    _sync(app, "ldap", email="bob@ldap", groups=("finance",))
    okta.user("bob", emails=[{"value": "bob@scim"}])
    assert _record(app).email == "bob@scim"
    assert okta.call("DELETE", "/Users/u-bob").status_code == 204
    assert okta.call("GET", "/Users/u-bob").status_code == 404
    record = _record(app)
    assert record is not None and record.email == "bob@ldap" and record.active
    assert _decision_input(app)["groups"] == ["finance"]
    assert _events(app, EventType.ACCOUNT_DELETED) == []


def test_a_scim_only_user_keeps_the_direct_path(app: Flask, okta: Scim) -> None:
    carol = okta.user("carol", emails=[{"value": "carol@scim"}])
    with _core(app).storage.unit_of_work() as uow:
        assert uow.source_claims.for_user(carol["id"]) == {}
        assert uow.directory_users.get(carol["id"]).source == "scim:okta"  # type: ignore[union-attr]
    okta.patch(f"/Users/{carol['id']}", {"op": "replace", "path": "active", "value": False})
    assert _decision_input(app, carol["id"])["active"] is False
    assert [e["subject"] for e in _events(app, EventType.ACCOUNT_DISABLED)] == [carol["id"]]


def test_a_deleted_user_leaves_the_member_list_the_group_keeps(okta: Scim) -> None:
    carol = okta.user("carol")
    group = okta.call(
        "POST",
        "/Groups",
        {"schemas": [GROUP], "displayName": "team", "members": [{"value": carol["id"]}]},
    ).json
    assert [m["value"] for m in group["members"]] == [carol["id"]]
    assert okta.call("DELETE", f"/Users/{carol['id']}").status_code == 204
    after = okta.call("GET", f"/Groups/{group['id']}").json
    assert "members" not in after and after["meta"]["version"] != group["meta"]["version"]


def test_without_a_source_of_truth_a_taken_username_is_still_409(tmp_path: Path) -> None:
    app = create_app(
        Settings.model_validate(
            {
                "data_dir": tmp_path / "data",
                "dev_mode": True,
                "public_url": PUBLIC_URL,
                "policy_dir": POLICY_DIR,
                "scim": scim_settings(tmp_path),
            }
        )
    )
    try:
        _sync(app, "ldap")
        okta = Scim(app.test_client(), OKTA_TOKEN)
        r = okta.call("POST", "/Users", {"schemas": [USER], "userName": "bob"})
        assert r.status_code == 409
    finally:
        app.extensions["posture"].core.close()


def test_a_source_of_truth_without_scim_does_not_link(database: Database) -> None:
    storage = SqlStorage(database)
    sync_source(storage, "ldap", [SourceUser(id="u-bob", username="bob")])
    service = ScimService(
        storage,
        "https://gw.example/scim/v2",
        source_of_truth=SourceOfTruth.parse({"email": ["ldap", "users_file"]}),
    )
    with pytest.raises(Uniqueness):
        service.create(USER_KIND, "okta", {"schemas": [USER], "userName": "bob"})
