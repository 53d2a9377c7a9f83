"""The SCIM 2.0 server over HTTP (Flask test client): the request shapes Okta and Entra
publish, the mirror and the events behind them, and the attacks (refused, nothing changed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask

from mdm_core.bus.events import EventType
from mdm_core.directory.mirror import user_context
from mdm_core.runtime import MdmCore
from tests.integration.scim_fixtures import (
    ENTERPRISE,
    ENTRA_TOKEN,
    GROUP,
    OKTA_TOKEN,
    USER,
    Scim,
    make_app,
)

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    yield from make_app(tmp_path, auth_failures_per_minute=5, max_body_bytes=4096)


@pytest.fixture
def okta(app: Flask) -> Scim:
    return Scim(app.test_client(), OKTA_TOKEN)


@pytest.fixture
def entra(app: Flask) -> Scim:
    return Scim(app.test_client(), ENTRA_TOKEN)


def _core(app: Flask) -> MdmCore:
    core = app.extensions["posture"].core
    assert isinstance(core, MdmCore)
    return core


def _events(app: Flask, kind: str) -> list[dict[str, Any]]:
    with _core(app).storage.unit_of_work() as uow:
        return [
            e.event.payload | {"subject": e.event.subject}
            for e in uow.outbox.fetch_unpublished(1000)
            if e.event.type == kind
        ]


def _audit(app: Flask, subject: str) -> list[tuple[str, str]]:
    with _core(app).storage.unit_of_work() as uow:
        return [(a.actor, a.action) for a in uow.audit.recent(subject)]


def test_discovery_is_public_and_advertises_what_is_served(app: Flask) -> None:
    anon = Scim(app.test_client(), None)
    spc = anon.call("GET", "/ServiceProviderConfig")
    assert spc.status_code == 200 and spc.mimetype == "application/scim+json"
    assert spc.json["patch"]["supported"] and spc.json["etag"]["supported"]
    assert spc.json["bulk"]["supported"] is False  # not advertised, not served
    types = anon.call("GET", "/ResourceTypes").json
    assert {t["name"] for t in types["Resources"]} == {"User", "Group"}
    schemas = anon.call("GET", "/Schemas").json
    assert {s["id"] for s in schemas["Resources"]} == {USER, GROUP, ENTERPRISE}
    assert anon.call("GET", f"/Schemas/{ENTERPRISE}").json["name"] == "EnterpriseUser"
    assert anon.call("GET", "/Schemas/urn:nope").status_code == 404


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic " + OKTA_TOKEN, "Bearer " + OKTA_TOKEN[:-1], "Bearer x"],
)
def test_missing_or_wrong_token_is_refused(app: Flask, header: str | None) -> None:
    client = app.test_client()
    headers = {} if header is None else {"Authorization": header}
    r = client.get("/scim/v2/Users", headers=headers)
    assert r.status_code == 401
    assert r.json["schemas"] == [ERROR] and r.json["status"] == "401"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_auth_failures_are_rate_limited_per_source(app: Flask, okta: Scim) -> None:
    wrong = Scim(app.test_client(), "wrong-token")
    statuses = [wrong.call("GET", "/Users").status_code for _ in range(7)]
    assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429]
    assert wrong.call("GET", "/Users").headers["Retry-After"]
    # a client with its valid token is not guessing: it is served from that address
    assert okta.call("GET", "/Users").status_code == 200


def test_a_client_sees_only_its_own_resources(okta: Scim, entra: Scim) -> None:
    ann = okta.user("ann@example.com")
    for method, body in (
        ("GET", None),
        ("PUT", {"schemas": [USER], "userName": "x"}),
        ("DELETE", None),
    ):
        r = entra.call(method, f"/Users/{ann['id']}", body)
        assert r.status_code == 404, method
    assert (
        entra.patch(
            f"/Users/{ann['id']}", {"op": "replace", "value": {"active": False}}
        ).status_code
        == 404
    )
    assert (
        entra.call("GET", '/Users?filter=userName eq "ann@example.com"').json["totalResults"] == 0
    )
    assert okta.call("GET", f"/Users/{ann['id']}").json == ann


def test_okta_lifecycle(app: Flask, okta: Scim) -> None:
    # test connection, then "does the user exist", then create (Okta's published sequence)
    assert okta.call("GET", "/Users?startIndex=1&count=2").json["totalResults"] == 0
    exists = okta.call(
        "GET", "/Users?filter=userName%20eq%20%22dave%40example.com%22&startIndex=1&count=100"
    )
    assert exists.status_code == 200 and exists.json["Resources"] == []
    dave = okta.user(
        "dave@example.com",
        name={"givenName": "Dave", "familyName": "Doe"},
        emails=[{"primary": True, "value": "dave@example.com", "type": "work"}],
        displayName="Dave Doe",
        locale="en-US",
        externalId="00ujl29u0le5T6Aj10h7",
        groups=[],
        password="never-stored-1!",
        active=True,
    )
    assert "password" not in dave and dave["meta"]["version"] == 'W/"1"'
    ctx = user_context_of(app, dave["id"])
    assert ctx is not None and ctx.active
    # Okta deactivation: replace without path
    r = okta.patch(f"/Users/{dave['id']}", {"op": "replace", "value": {"active": False}})
    assert r.status_code == 200 and r.json["active"] is False and r.headers["ETag"] == 'W/"2"'
    ctx = user_context_of(app, dave["id"])
    assert ctx is not None and not ctx.active
    disabled = _events(app, EventType.ACCOUNT_DISABLED)
    assert [(e["subject"], e["source"]) for e in disabled] == [(dave["id"], "scim:okta")]
    assert ("scim:okta", "credentials.revoked") in _audit(app, f"user:{dave['id']}")
    assert ("scim:okta", "scim.user.patch") in _audit(app, f"user:{dave['id']}")
    # the same deactivation again changes nothing (no second event)
    okta.patch(f"/Users/{dave['id']}", {"op": "replace", "value": {"active": False}})
    assert len(_events(app, EventType.ACCOUNT_DISABLED)) == 1
    # Okta's PUT (AIW apps) re-activates
    put = okta.call("PUT", f"/Users/{dave['id']}", {**_strip(dave), "active": True})
    assert put.status_code == 200 and put.json["active"] is True
    # ...but the deactivation offboarded dave: logins stay blocked until an admin reinstates
    # (docs/offboarding.md), whatever a later sync says.
    assert not user_context_of(app, dave["id"]).active  # type: ignore[union-attr]
    app.extensions["posture"].core.offboarding.reinstate(
        dave["id"], actor="admin:test", reason="re-activated in Okta"
    )
    assert user_context_of(app, dave["id"]).active  # type: ignore[union-attr]
    # groups: create, rename with the id repeated, members by path and filter
    eng = okta.call(
        "POST", "/Groups", {"schemas": [GROUP], "displayName": "Engineering", "members": []}
    )
    assert eng.status_code == 201
    gid = eng.json["id"]
    renamed = okta.patch(
        f"/Groups/{gid}", {"op": "replace", "value": {"id": gid, "displayName": "Eng"}}
    )
    assert renamed.status_code == 200 and renamed.json["displayName"] == "Eng"
    added = okta.patch(
        f"/Groups/{gid}",
        {
            "op": "add",
            "path": "members",
            "value": [{"value": dave["id"], "display": "dave@example.com"}],
        },
    )
    assert [m["value"] for m in added.json["members"]] == [dave["id"]]
    assert "Eng" in user_context_of(app, dave["id"]).groups  # type: ignore[union-attr]
    assert okta.call("GET", f"/Users/{dave['id']}").json["groups"][0]["value"] == gid
    removed = okta.patch(
        f"/Groups/{gid}", {"op": "remove", "path": f'members[value eq "{dave["id"]}"]'}
    )
    assert "members" not in removed.json
    assert user_context_of(app, dave["id"]).groups == frozenset()  # type: ignore[union-attr]
    changes = [e["change"] for e in _events(app, EventType.GROUP_MEMBERSHIP_CHANGED)]
    assert changes == ["added", "removed"]


def test_entra_shapes(app: Flask, entra: Scim) -> None:
    boss = entra.user("boss@contoso.com", active=True)
    body = {
        "schemas": [USER, ENTERPRISE],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
        "active": True,
        "emails": [{"primary": True, "type": "work", "value": "Test_User_fd0ea19b@testuser.com"}],
        "meta": {"resourceType": "User"},
        "name": {
            "formatted": "givenName familyName",
            "familyName": "familyName",
            "givenName": "givenName",
        },
        "roles": [],
        ENTERPRISE: {"department": "R&D", "employeeNumber": "1234"},
    }
    user = entra.call("POST", "/Users", body)
    assert user.status_code == 201 and user.json["schemas"] == [USER, ENTERPRISE]
    uid = user.json["id"]
    found = entra.call("GET", '/Users?filter=externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"')
    assert [r["id"] for r in found.json["Resources"]] == [uid]
    by_mail = entra.call(
        "GET", '/Users?filter=emails[type eq "work"].value eq "test_user_fd0ea19b@testuser.com"'
    )
    assert [r["id"] for r in by_mail.json["Resources"]] == [uid]
    r = entra.patch(
        f"/Users/{uid}",
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "updated@testuser.com"},
        {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
        {"op": "Add", "path": f"{ENTERPRISE}:manager", "value": boss["id"]},
        {"op": "Replace", "path": "active", "value": "False"},
    )
    assert r.status_code == 200, r.json
    assert r.json["emails"][0]["value"] == "updated@testuser.com"
    assert r.json["name"]["familyName"] == "updatedFamilyName"
    assert r.json[ENTERPRISE]["manager"] == {"value": boss["id"]}
    assert r.json["active"] is False and not user_context_of(app, uid).active  # type: ignore[union-attr]
    group = entra.call(
        "POST",
        "/Groups",
        {
            "schemas": [GROUP],
            "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
            "displayName": "displayName",
            "meta": {"resourceType": "Group"},
        },
    )
    gid = group.json["id"]
    listed = entra.call(
        "GET", '/Groups?excludedAttributes=members&filter=displayName eq "displayName"'
    )
    assert [g["id"] for g in listed.json["Resources"]] == [gid]
    assert (
        entra.patch(
            f"/Groups/{gid}",
            {"op": "Add", "path": "members", "value": [{"value": uid}, {"value": boss["id"]}]},
        ).status_code
        == 200
    )
    one = entra.call("GET", f"/Groups/{gid}?excludedAttributes=members")
    assert "members" not in one.json
    r = entra.patch(
        f"/Groups/{gid}", {"op": "Remove", "path": "members", "value": [{"value": uid}]}
    )
    assert [m["value"] for m in r.json["members"]] == [boss["id"]]
    # hard delete (Entra, 30 days after the soft delete)
    assert entra.call("DELETE", f"/Users/{uid}").status_code == 204
    assert entra.call("GET", f"/Users/{uid}").status_code == 404
    assert user_context_of(app, uid) is None
    deleted = _events(app, EventType.ACCOUNT_DELETED)
    assert [(e["subject"], e["source"]) for e in deleted] == [(uid, "scim:entra")]
    assert ("scim:entra", "scim.user.delete") in _audit(app, f"user:{uid}")
    assert entra.call("DELETE", f"/Groups/{gid}").status_code == 204


def test_filter_sort_and_pages(okta: Scim) -> None:
    for name in ("carol", "alice", "erin", "bob", "dave"):
        okta.user(name, title="T" if name in ("alice", "bob") else None)
    page = okta.call("GET", "/Users?sortBy=userName&sortOrder=descending&startIndex=2&count=2").json
    assert page["totalResults"] == 5 and page["startIndex"] == 2 and page["itemsPerPage"] == 2
    assert [u["userName"] for u in page["Resources"]] == ["dave", "carol"]
    titled = okta.call("GET", "/Users?filter=title pr&attributes=userName").json
    assert sorted(u["userName"] for u in titled["Resources"]) == ["alice", "bob"]
    assert set(titled["Resources"][0]) == {"schemas", "id", "userName"}
    search = okta.call(
        "POST",
        "/Users/.search",
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": 'userName sw "e"',
            "count": 10,
        },
    )
    assert [u["userName"] for u in search.json["Resources"]] == ["erin"]
    assert okta.call("GET", "/Users?count=0").json["Resources"] == []
    assert okta.call("GET", "/Users?sortOrder=sideways").status_code == 400
    assert okta.call("GET", "/Users?count=many").status_code == 400


@pytest.mark.parametrize(
    "text",
    [
        'userName eq "x" or 1 eq 1',
        "userName eq x",
        'userName eq "x") or (userName pr',
        "userName eq \"x\"' OR '1'='1",
    ],
)
def test_filter_injection_is_refused(okta: Scim, text: str) -> None:
    okta.user("victim")
    r = okta.call("GET", "/Users?" + _q(filter=text))
    assert r.status_code == 400 and r.json["scimType"] == "invalidFilter"


def test_filter_text_is_data_never_code(okta: Scim) -> None:
    okta.user("victim")
    for text in ('userName eq "\\" OR 1=1 --"', 'userName co "\'; DELETE FROM scim_resources; --"'):
        r = okta.call("GET", "/Users?" + _q(filter=text))
        assert r.status_code == 200 and r.json["totalResults"] == 0
    assert okta.call("GET", "/Users").json["totalResults"] == 1


def test_bad_bodies_are_refused_and_change_nothing(okta: Scim) -> None:
    cases = [
        (b"{not json", 400),
        (b'{"schemas": ["' + USER.encode() + b'"], "userName": "a", "userName": "b"}', 400),
        (b"[1, 2]", 400),
        (json.dumps({"userName": "no-schemas"}).encode(), 400),
        (json.dumps({"schemas": [USER]}).encode(), 400),
        (json.dumps({"schemas": [USER], "userName": 7}).encode(), 400),
        (json.dumps({"schemas": [USER], "userName": "a", "active": "yes"}).encode(), 400),
        (json.dumps({"schemas": [USER, "urn:evil"], "userName": "a"}).encode(), 400),
        (json.dumps({"schemas": [USER], "userName": "a" * 300}).encode(), 400),
        (json.dumps({"schemas": [USER], "userName": "big", "title": "x" * 5000}).encode(), 413),
        (b"\xef\xbb\xbf{}", 400),
    ]
    for raw, status in cases:
        r = okta.call("POST", "/Users", raw=raw)
        assert r.status_code == status, (raw[:60], r.json)
        assert r.json["schemas"] == [ERROR]
    assert okta.call("GET", "/Users").json["totalResults"] == 0


def test_uniqueness(okta: Scim, entra: Scim) -> None:
    okta.user("Same@Example.com")
    for client in (okta, entra):
        r = client.call("POST", "/Users", {"schemas": [USER], "userName": "same@example.COM"})
        assert r.status_code == 409 and r.json["scimType"] == "uniqueness"


def test_patch_of_id_or_meta_is_refused_and_changes_nothing(okta: Scim) -> None:
    ann = okta.user("ann", title="Engineer")
    path = f"/Users/{ann['id']}"
    for op in (
        {"op": "replace", "path": "id", "value": "mine"},
        {"op": "replace", "value": {"id": "mine"}},
        {"op": "replace", "path": "meta.lastModified", "value": "2020-01-01T00:00:00Z"},
        {"op": "add", "path": "groups", "value": [{"value": "admins"}]},
    ):
        r = okta.patch(path, {"op": "replace", "path": "title", "value": "Changed"}, op)
        assert r.status_code == 400 and r.json["scimType"] == "mutability", op
    after = okta.call("GET", path).json
    assert after["title"] == "Engineer" and after["meta"] == ann["meta"]


def test_etags(okta: Scim) -> None:
    ann = okta.user("ann", title="Engineer")
    path = f"/Users/{ann['id']}"
    assert okta.call("GET", path, If_None_Match='W/"1"').status_code == 304
    stale = okta.patch(path, {"op": "replace", "path": "title", "value": "Boss"}, If_Match='W/"7"')
    assert stale.status_code == 412 and stale.json["schemas"] == [ERROR]
    assert (
        okta.call("PUT", path, {"schemas": [USER], "userName": "ann"}, If_Match='W/"2"').status_code
        == 412
    )
    assert okta.call("DELETE", path, If_Match='"9"').status_code == 412
    current = okta.call("GET", path)
    assert current.json["title"] == "Engineer" and current.headers["ETag"] == 'W/"1"'
    ok = okta.patch(path, {"op": "replace", "path": "title", "value": "Boss"}, If_Match='W/"1"')
    assert ok.status_code == 200 and ok.headers["ETag"] == 'W/"2"'
    assert okta.call("DELETE", path, If_Match='W/"2"').status_code == 204


def test_group_members_must_exist_for_the_client(okta: Scim, entra: Scim) -> None:
    theirs = entra.user("theirs")
    for value in ("no-such-id", theirs["id"]):
        r = okta.call(
            "POST",
            "/Groups",
            {"schemas": [GROUP], "displayName": "G", "members": [{"value": value}]},
        )
        assert r.status_code == 400
    assert okta.call("GET", "/Groups").json["totalResults"] == 0


def test_unknown_endpoints_and_methods(okta: Scim) -> None:
    assert okta.call("GET", "/Bulk").status_code == 404
    assert okta.call("DELETE", "/Users").status_code == 405
    assert okta.call("GET", "/Users/nope").status_code == 404


def user_context_of(app: Flask, user_id: str) -> Any:
    with _core(app).storage.unit_of_work() as uow:
        return user_context(uow, user_id)


def _strip(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in ("id", "meta")}


def _q(**params: str) -> str:
    return urlencode(params)
