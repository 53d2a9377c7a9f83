"""PATCH operations (RFC 7644 §3.5.2), incl. the shapes Okta and Entra send."""

from __future__ import annotations

from typing import Any

import pytest

from idp_connectors.scim.errors import BadRequest
from idp_connectors.scim.patch import apply
from idp_connectors.scim.schemas import ENTERPRISE_USER, GROUP_KIND, PATCH_OP, USER_KIND

USER_DOC: dict[str, Any] = {
    "userName": "ann",
    "active": True,
    "name": {"givenName": "Ann", "familyName": "Lee"},
    "emails": [{"value": "ann@work.example", "type": "work", "primary": True}],
}


def _ops(*ops: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(ops)}


def _user(*ops: dict[str, Any]) -> dict[str, Any]:
    return apply(USER_KIND, USER_DOC, _ops(*ops), resource_id="u1")


def test_okta_deactivation_replace_without_path() -> None:
    out = _user({"op": "replace", "value": {"active": False}})
    assert out["active"] is False and USER_DOC["active"] is True  # input untouched


def test_entra_shapes() -> None:
    out = _user(
        {"op": "Replace", "path": "active", "value": "False"},  # Entra's string boolean
        {"op": "Add", "path": 'emails[type eq "home"].value', "value": "ann@home.example"},
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "new@work.example"},
        {"op": "Add", "value": {"name.givenName": "Annie", "title": "Lead"}},
        {"op": "Add", "path": f"{ENTERPRISE_USER}:manager", "value": "boss-id"},
        {"op": "Replace", "path": f"{ENTERPRISE_USER}:department", "value": "Finance"},
    )
    assert out["active"] is False
    assert {"value": "ann@home.example", "type": "home"} in out["emails"]
    assert out["emails"][0]["value"] == "new@work.example"
    assert out["name"] == {"givenName": "Annie", "familyName": "Lee"}
    assert out["title"] == "Lead"
    assert out[ENTERPRISE_USER] == {"manager": {"value": "boss-id"}, "department": "Finance"}


def test_group_members_add_and_remove_by_filter_and_by_value() -> None:
    doc = {"displayName": "Finance", "members": [{"value": "a"}, {"value": "b"}]}
    out = apply(
        GROUP_KIND,
        doc,
        _ops(
            {
                "op": "add",
                "path": "members",
                "value": [{"value": "c", "display": "C"}, {"value": "a"}],
            },
            {"op": "Remove", "path": 'members[value eq "b"]'},  # Entra / Okta
            {"op": "Remove", "path": "members", "value": [{"value": "c"}]},  # Entra
        ),
        resource_id="g1",
    )
    assert out["members"] == [{"value": "a"}]


def test_okta_group_rename_repeats_its_id() -> None:
    doc = {"displayName": "Finance"}
    out = apply(
        GROUP_KIND,
        doc,
        _ops({"op": "replace", "value": {"id": "g1", "displayName": "Fin"}}),
        resource_id="g1",
    )
    assert out == {"displayName": "Fin"}


def test_primary_moves() -> None:
    out = _user({"op": "add", "path": "emails", "value": [{"value": "x@y", "primary": True}]})
    assert [e.get("primary") for e in out["emails"]] == [False, True]


def test_remove_paths() -> None:
    out = _user({"op": "remove", "path": "name.familyName"}, {"op": "remove", "path": "emails"})
    assert out["name"] == {"givenName": "Ann"} and "emails" not in out


@pytest.mark.parametrize(
    ("op", "scim_type"),
    [
        ({"op": "replace", "path": "id", "value": "other"}, "mutability"),
        ({"op": "replace", "value": {"id": "other"}}, "mutability"),
        ({"op": "replace", "path": "meta.created", "value": "2020-01-01T00:00:00Z"}, "mutability"),
        ({"op": "add", "path": "groups", "value": [{"value": "g"}]}, "mutability"),
        ({"op": "remove"}, "noTarget"),
        (
            {"op": "replace", "path": 'emails[type eq "home" or value pr].display', "value": "x"},
            None,
        ),
        ({"op": "replace", "path": 'emails[type eq "other"]', "value": {"value": "x"}}, "noTarget"),
        ({"op": "replace", "path": "nosuch", "value": 1}, "invalidPath"),
        ({"op": "replace", "path": "emails[type eq", "value": 1}, "invalidPath"),
        ({"op": "move", "path": "title", "value": "x"}, "invalidSyntax"),
        ({"op": "replace", "path": "title"}, "invalidSyntax"),
        ({"op": "replace", "path": "active", "value": "yes"}, "invalidValue"),
        ({"op": "replace", "path": "title", "value": {"a": 1}}, "invalidValue"),
    ],
)
def test_refused_operations(op: dict[str, Any], scim_type: str | None) -> None:
    if scim_type is None:  # a filter that matches an element: applies, no error
        assert _user(op)["emails"][0]["display"] == "x"
        return
    with pytest.raises(BadRequest) as info:
        _user(op)
    assert info.value.scim_type == scim_type


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"Operations": [{"op": "add", "value": {}}]},  # no schemas
        {"schemas": [PATCH_OP]},
        {"schemas": [PATCH_OP], "Operations": []},
        {"schemas": [PATCH_OP], "Operations": ["add"]},
        {"schemas": [PATCH_OP], "Operations": [{"op": "add", "value": {}}] * 1001},
    ],
)
def test_refused_bodies(body: Any) -> None:
    with pytest.raises(BadRequest):
        apply(USER_KIND, USER_DOC, body, resource_id="u1")
