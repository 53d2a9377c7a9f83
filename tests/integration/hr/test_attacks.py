"""What an attacker tries against the HR webhooks is refused AND nothing is written: no
delivery record, no offboarding job, no device command, the user not blocked."""

from __future__ import annotations

import json
import time

import pytest

from posture_gateway.hr.signature import sign
from tests.integration.hr.conftest import (
    BAMBOO_KEY,
    EMAIL,
    GENERIC_KEY,
    HrApp,
    body_of,
    employee,
    post_bamboo,
)

OFFBOARD = body_of([employee(status="Inactive", workEmail=EMAIL)])


def _refused(hr_app: HrApp, answer: object, status: int, code: str) -> None:
    assert getattr(answer, "status_code") == status, getattr(answer, "json")  # noqa: B009
    assert getattr(answer, "json")["error"] == code  # noqa: B009
    assert hr_app.counts() == {"hr_deliveries": 0, "jobs": 0, "commands": 0}
    assert hr_app.audit("hr.employee_event") == []
    assert hr_app.audit("offboarding.requested") == []


def test_forged_signature(hr_app: HrApp) -> None:
    answer = post_bamboo(hr_app.client, OFFBOARD, headers={"X-BambooHR-Signature": "0" * 64})
    _refused(hr_app, answer, 401, "invalid_signature")


def test_signature_over_another_body(hr_app: HrApp) -> None:
    ts = str(int(time.time()))
    harmless = body_of([employee(firstName="Al", workEmail=EMAIL)])
    answer = post_bamboo(
        hr_app.client,
        OFFBOARD,
        headers={
            "X-BambooHR-Timestamp": ts,
            "X-BambooHR-Signature": sign(BAMBOO_KEY.encode(), harmless, ts),
        },
    )
    _refused(hr_app, answer, 401, "invalid_signature")


def test_right_signature_stale_timestamp(hr_app: HrApp) -> None:
    answer = post_bamboo(hr_app.client, OFFBOARD, ts=int(time.time()) - 301)
    _refused(hr_app, answer, 401, "stale_timestamp")


def test_future_timestamp(hr_app: HrApp) -> None:
    answer = post_bamboo(hr_app.client, OFFBOARD, ts=int(time.time()) + 3600)
    _refused(hr_app, answer, 401, "future_timestamp")


def test_replay_after_the_window(hr_app: HrApp) -> None:
    """A captured delivery (body, timestamp and signature) sent again later: the signature
    still matches, the timestamp no longer does."""
    captured_at = int(time.time()) - 600
    answer = post_bamboo(hr_app.client, OFFBOARD, ts=captured_at)
    _refused(hr_app, answer, 401, "stale_timestamp")


def test_the_generic_secret_does_not_sign_for_bamboohr(hr_app: HrApp) -> None:
    answer = post_bamboo(hr_app.client, OFFBOARD, key=GENERIC_KEY)
    _refused(hr_app, answer, 401, "invalid_signature")
    # ...nor the BambooHR key for the generic route
    body = json.dumps(
        {"event_id": "e1", "type": "employee.offboard", "employee": {"email": EMAIL}}
    ).encode()
    ts = str(int(time.time()))
    crossed = hr_app.client.post(
        "/hr/v1/webhooks/generic",
        data=body,
        headers={
            "X-Posture-Timestamp": ts,
            "X-Posture-Signature": sign(BAMBOO_KEY.encode(), body, ts),
        },
        content_type="application/json",
    )
    _refused(hr_app, crossed, 401, "invalid_signature")
    # ...nor BambooHR's headers on the generic route
    headers = {
        "X-BambooHR-Timestamp": ts,
        "X-BambooHR-Signature": sign(GENERIC_KEY.encode(), body, ts),
    }
    other = hr_app.client.post(
        "/hr/v1/webhooks/generic", data=body, headers=headers, content_type="application/json"
    )
    _refused(hr_app, other, 401, "missing_signature")


@pytest.mark.parametrize("missing", ["X-BambooHR-Signature", "X-BambooHR-Timestamp"])
def test_a_missing_header(hr_app: HrApp, missing: str) -> None:
    answer = post_bamboo(hr_app.client, OFFBOARD, headers={missing: None})  # type: ignore[dict-item]
    _refused(hr_app, answer, 401, "missing_signature")


@pytest.mark.parametrize(
    "signature",
    ["a" * 40, "a" * 63, "a" * 65, "g" * 64, "sha256=" + "a" * 64, " " + "a" * 63, "ä" * 64],
)
def test_malformed_signatures(hr_app: HrApp, signature: str) -> None:
    answer = post_bamboo(hr_app.client, OFFBOARD, headers={"X-BambooHR-Signature": signature})
    _refused(hr_app, answer, 401, "invalid_signature")


def test_duplicate_json_keys_signed(hr_app: HrApp) -> None:
    """Two parsers could read two deliveries from one signed body: refused whole."""
    body = (
        b'{"employees": [{"id": "101", "fields": {"status": "Active", '
        b'"workEmail": "alice@example.com", "status": "Inactive"}}]}'
    )
    _refused(hr_app, post_bamboo(hr_app.client, body), 400, "invalid_json")
    twice = b'{"employees": [], "employees": [{"id": "1", "fields": {"status": "Inactive"}}]}'
    _refused(hr_app, post_bamboo(hr_app.client, twice), 400, "invalid_json")


def test_malformed_json_and_shapes_signed(hr_app: HrApp) -> None:
    for body in (b"{", b'{"employees": [1]}', b"null", b'{"employees": NaN}', b"\xff"):
        answer = post_bamboo(hr_app.client, body)
        assert answer.status_code == 400, body
    _refused(hr_app, post_bamboo(hr_app.client, b"{"), 400, "invalid_json")


def test_a_huge_body(hr_app: HrApp) -> None:
    huge = body_of([employee(str(i), status="Inactive", pad="x" * 1000) for i in range(400)])
    assert len(huge) > 256 * 1024
    _refused(hr_app, post_bamboo(hr_app.client, huge), 413, "payload_too_large")


def test_a_wrong_content_type(hr_app: HrApp) -> None:
    answer = post_bamboo(hr_app.client, OFFBOARD, content_type="application/x-www-form-urlencoded")
    _refused(hr_app, answer, 415, "unsupported_media_type")
    answer = post_bamboo(hr_app.client, OFFBOARD, content_type="text/plain")
    _refused(hr_app, answer, 415, "unsupported_media_type")
