"""POST /api/v1/decision through the REAL decision service: proof, nonce, posture, engine.

The app's own access evaluator (wired by ``create_app``) verifies a device
login proof bound to a nonce issued by the gateway, resolves the user in the directory
mirror, reads the posture the device reported over the device protocol, and evaluates the
shipped policies.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from flask import Flask

from mdm_core.posture.model import Ownership, Platform
from mdm_core.simulator.reports import DeviceTraits, native_reports
from mdm_core.storage.directory import DirectoryUser
from tests.helpers.enrolled import EnrolledDevice, enroll_device
from tests.unit.posture_gateway.integrations.conftest import PUBLIC_URL
from tests.unit.posture_gateway.integrations.test_posture_api import URL, bearer, issue

AUDIENCE = f"{PUBLIC_URL}/api/v1/decision"


def _device(app: Flask, platform: Platform, traits: DeviceTraits) -> EnrolledDevice:
    core = app.extensions["posture"].core
    core.directory.upsert_user(
        DirectoryUser(
            id="u-alice", username="alice", active=True, source="local",
            updated_at=datetime.now(UTC),
        )
    )  # fmt: skip
    dev = enroll_device(core, "u-alice", ownership=Ownership.CORPORATE, platform=platform)
    client = app.test_client()
    for fmt, report in native_reports(
        platform.value, "S-" + dev.device_id[:6], "corporate", traits
    ):
        body = json.dumps({"format": fmt, "report": report}).encode()
        proof = dev.request_proof("POST", core.config.public_url + "/mdm/v1/checkin", body)
        res = client.post(
            "/mdm/v1/checkin",
            data=body,
            headers={"Device-Proof": proof},
            content_type="application/json",
        )
        assert res.status_code == 200, res.get_data(as_text=True)
    return dev


def api_nonce(app: Flask, token: str | None = None) -> dict[str, Any]:
    """Step 1 of the documented sequence: POST /api/v1/nonce, authenticated like a decision."""
    response = app.test_client().post("/api/v1/nonce", headers=bearer(token or issue(app)))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    return dict(response.json)


def _ask(app: Flask, dev: EnrolledDevice, **overrides: Any) -> Any:
    nonce = api_nonce(app)["nonce"]
    body = {
        "user": "alice",
        "client_id": "payroll",
        "device_id": dev.device_id,
        "device_proof": dev.login_proof(audience=AUDIENCE, nonce=nonce),
    }
    body.update(overrides)
    response = app.test_client().post(URL, json=body, headers=bearer(issue(app)))
    assert response.status_code == 200, response.get_data(as_text=True)
    return body, response.json


def test_healthy_device_is_let_in_with_reasons_and_posture_age(app: Flask) -> None:
    dev = _device(app, Platform.LINUX, DeviceTraits())
    _, answer = _ask(app, dev)
    assert answer["outcome"] in {"allow", "warn"}
    assert answer["device_id"] == dev.device_id
    assert answer["posture_age_s"] is not None and answer["posture_age_s"] < 60


def test_a_proof_is_single_use(app: Flask) -> None:
    dev = _device(app, Platform.LINUX, DeviceTraits())
    body, first = _ask(app, dev)
    assert first["outcome"] != "block"
    again = app.test_client().post(URL, json=body, headers=bearer(issue(app)))
    assert again.json["outcome"] == "block"
    assert again.json["reasons"][0]["code"] == "nonce_invalid"


def test_rooted_device_is_blocked(app: Flask) -> None:
    dev = _device(app, Platform.ANDROID, DeviceTraits(jailbroken=True))
    _, answer = _ask(app, dev)
    assert answer["outcome"] == "block"
    assert "device_quarantined" in {r["code"] for r in answer["reasons"]}


def test_device_hint_that_disagrees_with_the_proof_is_blocked(app: Flask) -> None:
    dev = _device(app, Platform.LINUX, DeviceTraits())
    _, answer = _ask(app, dev, device_id="someone-elses-device")
    assert answer["outcome"] == "block"
    assert answer["reasons"][0]["code"] == "device_mismatch"


def test_proof_for_another_audience_is_blocked(app: Flask) -> None:
    dev = _device(app, Platform.LINUX, DeviceTraits())
    nonce = api_nonce(app)["nonce"]
    body = {
        "user": "alice",
        "client_id": "payroll",
        "device_proof": dev.login_proof(audience="https://elsewhere.example", nonce=nonce),
    }
    answer = app.test_client().post(URL, json=body, headers=bearer(issue(app))).json
    assert answer["outcome"] == "block"
    assert answer["reasons"][0]["code"] == "wrong_target"


def test_unknown_user_is_blocked(app: Flask) -> None:
    dev = _device(app, Platform.LINUX, DeviceTraits())
    nonce = api_nonce(app)["nonce"]
    body = {
        "user": "mallory",
        "client_id": "payroll",
        "device_proof": dev.login_proof(audience=AUDIENCE, nonce=nonce),
    }
    response = app.test_client().post(URL, json=body, headers=bearer(issue(app)))
    assert response.json["outcome"] == "block"
