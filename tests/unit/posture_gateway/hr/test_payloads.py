"""Strict parsing of both webhook formats, and hypothesis fuzzing: only HrError escapes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posture_gateway.hr.errors import HrError
from posture_gateway.hr.payloads import load_json, parse_bamboohr, parse_generic

BAMBOO = {
    "employees": [
        {
            "action": "Updated",
            "changedFields": ["status"],
            "fields": {"status": "Inactive", "workEmail": "a@example.com"},
            "id": "12345",
            "timestamp": "2026-01-31T18:42:00+0000",
        }
    ]
}


def _code(fn: object, body: bytes) -> str:
    with pytest.raises(HrError) as caught:
        fn(body)  # type: ignore[operator]
    assert caught.value.status == 400
    return caught.value.code


def test_bamboohr_payload() -> None:
    payload = parse_bamboohr(json.dumps(BAMBOO).encode())
    (employee,) = payload.employees
    assert employee.employee_id == "12345"
    assert employee.changed_fields == ["status"]
    assert employee.fields["status"] == "Inactive"
    numeric = {"employees": [{"id": 9, "fields": {}, "changedFields": []}]}
    assert parse_bamboohr(json.dumps(numeric).encode()).employees[0].employee_id == "9"
    extra = {**BAMBOO, "webhookId": 3, "companyDomain": "acme"}  # keys BambooHR may add
    assert parse_bamboohr(json.dumps(extra).encode()).employees


def test_bamboohr_refusals() -> None:
    assert _code(parse_bamboohr, b'{"employees": []}') == "invalid_request"
    assert _code(parse_bamboohr, b"{}") == "invalid_request"
    assert _code(parse_bamboohr, b"[]") == "invalid_request"
    assert _code(parse_bamboohr, b'{"employees": [{"fields": {}}]}') == "invalid_request"
    nested = b'{"employees": [{"id": "1", "fields": {"a": {"b": 1}}}]}'
    assert _code(parse_bamboohr, nested) == "invalid_request"
    dup = b'{"employees": [{"id": "1", "fields": {"status": "Active", "status": "Inactive"}}]}'
    assert _code(parse_bamboohr, dup) == "invalid_json"
    assert _code(parse_bamboohr, b'{"employees": [{"id": "1", "id": "2"}]}') == "invalid_json"


def test_strict_json() -> None:
    assert load_json(b'{"a": 1}') == {"a": 1}
    assert _code(load_json, b'{"a": NaN}') == "invalid_json"
    assert _code(load_json, b'{"a": Infinity}') == "invalid_json"
    assert _code(load_json, b"\xff\xfe{}") == "invalid_json"
    assert _code(load_json, b"[" * 100_000) == "invalid_json"
    assert _code(load_json, b"") == "invalid_json"
    assert _code(load_json, b'{"a": 1} trailing') == "invalid_json"


def test_generic_payload() -> None:
    body = {
        "event_id": "evt-1",
        "type": "employee.offboard",
        "employee": {"email": "a@example.com"},
        "effective_at": "2026-12-24T17:00:00+01:00",
    }
    event = parse_generic(json.dumps(body).encode())
    assert event.employee.email == "a@example.com"
    assert event.effective_at is not None and event.effective_at.utcoffset() is not None
    for bad in (
        {**body, "extra": 1},
        {**body, "type": "employee.hired"},
        {**body, "employee": {}},
        {**body, "employee": {"email": "a@example.com", "username": "a"}},
        {**body, "employee": {"email": "a@example.com", "role": "x"}},
        {**body, "effective_at": "2026-12-24T17:00:00"},  # no time zone
        {**body, "event_id": ""},
        {**body, "event_id": "has space"},
        {k: v for k, v in body.items() if k != "event_id"},
    ):
        assert _code(parse_generic, json.dumps(bad).encode()) == "invalid_request"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_bytes(body: bytes) -> None:
    for parse in (parse_bamboohr, parse_generic):
        try:
            parse(body)
        except HrError as exc:
            assert exc.status == 400


@settings(max_examples=300, deadline=None)
@given(_json)
def test_fuzz_json(value: object) -> None:
    body = json.dumps(value).encode()
    for parse in (parse_bamboohr, parse_generic):
        try:
            parse(body)
        except HrError as exc:
            assert exc.status == 400


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["id", "fields", "changedFields", "action"]), _json))
def test_fuzz_employee_shapes(employee: dict[str, object]) -> None:
    body = json.dumps({"employees": [employee]}).encode()
    try:
        parse_bamboohr(body)
    except HrError as exc:
        assert exc.status == 400
