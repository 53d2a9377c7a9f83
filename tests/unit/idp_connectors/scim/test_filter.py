"""The SCIM filter grammar (RFC 7644 §3.4.2.2) and its evaluation over representations."""

from __future__ import annotations

from typing import Any

import pytest

from idp_connectors.scim.errors import BadRequest
from idp_connectors.scim.filter import MAX_DEPTH, Compare, Or, ValuePath, matches, parse
from idp_connectors.scim.schemas import ENTERPRISE_USER, GROUP_KIND, USER_KIND

ANN: dict[str, Any] = {
    "id": "2819c223",
    "userName": "Ann.Lee@Example.com",
    "externalId": "AbC",
    "name": {"familyName": "Lee", "givenName": "Ann"},
    "title": "Engineer",
    "active": True,
    "emails": [
        {"value": "ann@example.com", "type": "work", "primary": True},
        {"value": "ann@home.example", "type": "home"},
    ],
    ENTERPRISE_USER: {"employeeNumber": "701984", "manager": {"value": "boss"}},
    "meta": {"lastModified": "2026-12-01T09:00:00Z", "resourceType": "User"},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('userName eq "ann.lee@example.com"', True),  # userName is not caseExact
        ('externalId eq "abc"', False),  # externalId is caseExact
        ('externalId eq "AbC"', True),
        ('name.familyName co "ee"', True),
        ('userName sw "ann" and userName ew ".com"', True),
        ("title pr", True),
        ("nickName pr", False),
        ('emails[type eq "work" and value co "@example.com"]', True),
        ('emails[type eq "other"]', False),
        ('emails co "home.example"', True),  # complex without sub-attribute: its value
        ('emails.type eq "home"', True),
        ('emails[type eq "work"].value eq "ann@example.com"', True),  # Entra's matching
        ('emails[type eq "home"].value eq "ann@example.com"', False),
        ("active eq true", True),
        ("active ne true", False),
        ('not (title eq "Engineer")', False),
        ('title eq "x" or (userName pr and not (active eq false))', True),
        ('meta.lastModified gt "2026-11-30T00:00:00Z"', True),
        ('meta.lastModified lt "2026-12-01T09:00:00+00:00"', False),
        (f'{ENTERPRISE_USER}:employeeNumber eq "701984"', True),
        (f'{ENTERPRISE_USER}:manager.value eq "boss"', True),
        ('urn:ietf:params:scim:schemas:core:2.0:User:userName sw "ANN"', True),
        ("title eq null", False),
        ("nickName eq null", True),
        ('unknownAttr eq "x"', False),
        ('USERNAME EQ "ann.lee@example.com"', True),  # operators and names ignore case
    ],
)
def test_evaluation(text: str, expected: bool) -> None:
    assert matches(parse(text), ANN, USER_KIND) is expected


def test_precedence_and_binds_tighter_than_or() -> None:
    node = parse('title eq "a" or title eq "b" and title eq "c"')
    assert isinstance(node, Or) and isinstance(node.left, Compare)


def test_value_path_and_strings_with_escapes() -> None:
    node = parse(r'members[value eq "a\"b"]')
    assert isinstance(node, ValuePath)
    assert matches(node, {"members": [{"value": 'a"b'}]}, GROUP_KIND)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "userName",
        'userName xx "a"',
        'userName eq "a" and',
        'userName eq "a" extra',
        "userName eq bareword",
        '(userName eq "a"',
        'emails[type eq "work"',
        'userName eq "unterminated',
        "userName eq 'single'",
        '"string" eq userName',
        'userName eq "a"; DROP TABLE scim_resources; --',
        "active gt true",
        "x" * 5000,
        "(" * (MAX_DEPTH + 1) + "userName pr" + ")" * (MAX_DEPTH + 1),
        'a[b[c eq "d"]]',
        'emails[type eq "work"].value',
        'emails[type eq "work"].a.b eq "x"',
    ],
)
def test_refused_filters(text: str) -> None:
    with pytest.raises(BadRequest) as info:
        node = parse(text)
        matches(node, ANN, USER_KIND)  # "active gt true" fails at evaluation
    assert info.value.scim_type == "invalidFilter"
