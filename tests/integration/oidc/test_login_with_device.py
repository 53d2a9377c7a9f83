"""Login through the REAL device gate: enrolled device, real check-in, real policies.

No stub gate here: the app's own access evaluator verifies the login proof signed by
the enrolled device key, reads the posture the device reported over the device protocol,
evaluates the shipped policy set and audits the decision.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from flask import Flask

from mdm_core.posture.model import Ownership, Platform
from mdm_core.simulator.reports import DeviceTraits, native_reports
from mdm_core.storage.directory import DirectoryUser
from posture_gateway.oidc.server import OIDCProvider
from tests.helpers.enrolled import EnrolledDevice, enroll_device
from tests.integration.oidc.conftest import Browser


def _core(app: Flask) -> Any:
    return app.extensions["posture"].core


def _add_user(app: Flask, user_id: str = "u-alice", username: str = "alice") -> None:
    _core(app).directory.upsert_user(
        DirectoryUser(
            id=user_id,
            username=username,
            active=True,
            source="local",
            updated_at=datetime.now(UTC),
        )
    )


def _check_in(app: Flask, dev: EnrolledDevice, platform: str, traits: DeviceTraits) -> None:
    client = app.test_client()
    url = _core(app).config.public_url + "/mdm/v1/checkin"
    ownership = "corporate"
    for fmt, report in native_reports(platform, "SER" + dev.device_id[:8], ownership, traits):
        body = json.dumps({"format": fmt, "report": report}).encode()
        res = client.post(
            "/mdm/v1/checkin",
            data=body,
            headers={"Device-Proof": dev.request_proof("POST", url, body)},
            content_type="application/json",
        )
        assert res.status_code == 200, res.get_data(as_text=True)


def _enrolled(app: Flask, platform: Platform, traits: DeviceTraits, user: str = "u-alice"):
    dev = enroll_device(_core(app), user, ownership=Ownership.CORPORATE, platform=platform)
    _check_in(app, dev, platform.value, traits)
    return dev


def _submit_proof(browser: Browser, provider: OIDCProvider, dev: EnrolledDevice | None) -> Any:
    assert browser.authorize().status_code == 303
    assert browser.login().status_code == 303
    csrf, nonce = browser.device_page()
    proof = dev.login_proof(audience=provider.issuer.issuer, nonce=nonce) if dev else ""
    return browser.client.post(
        "/login/device", data={"csrf_token": csrf, "nonce": nonce, "proof": proof}
    )


def _finish(browser: Browser, response: Any) -> str:
    if response.status_code == 200 and "/login/continue" in response.get_data(as_text=True):
        page = response.get_data(as_text=True)
        from tests.integration.oidc.conftest import form_value

        response = browser.client.post(
            "/login/continue",
            data={
                "csrf_token": form_value(page, "csrf_token"),
                "ticket": form_value(page, "ticket"),
            },
        )
    return browser.code_from(response)


@pytest.fixture
def real_browser(app: Flask) -> Browser:
    _add_user(app)
    return Browser(app.test_client())


def _audit(app: Flask, subject: str) -> list[Any]:
    with _core(app).storage.unit_of_work() as uow:
        return [e for e in uow.audit.recent(subject) if e.action == "access.decision"]


def test_healthy_managed_device_logs_in_with_posture_claims(
    app: Flask, provider: OIDCProvider, real_browser: Browser
) -> None:
    dev = _enrolled(app, Platform.LINUX, DeviceTraits())
    code = _finish(real_browser, _submit_proof(real_browser, provider, dev))
    tokens = real_browser.exchange(code).get_json()
    claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert claims["sub"] == "u-alice"
    assert claims["device_id"] == dev.device_id
    assert claims["posture_outcome"] in {"allow", "warn"}
    assert "baseline-critical" in claims["posture_policy_ids"]
    assert claims["acr"] == "urn:posture-gateway:acr:managed-device"
    assert "hwk" in claims["amr"]
    audited = _audit(app, dev.device_id)
    assert audited and audited[0].outcome == claims["posture_outcome"]


def test_jailbroken_device_is_blocked_with_remediation_and_nothing_issued(
    app: Flask, provider: OIDCProvider, real_browser: Browser
) -> None:
    dev = _enrolled(app, Platform.ANDROID, DeviceTraits(jailbroken=True))
    response = _submit_proof(real_browser, provider, dev)
    page = response.get_data(as_text=True)
    assert response.status_code in (200, 403)
    assert "Location" not in response.headers
    assert "jailbroken" in page.lower() or "rooted" in page.lower()
    assert "factory reset" in page.lower() or "re-enroll" in page.lower() or "enroll" in page
    audited = _audit(app, dev.device_id)
    assert audited and audited[0].outcome == "block"


def test_no_proof_means_unknown_device_and_block(
    app: Flask, provider: OIDCProvider, real_browser: Browser
) -> None:
    response = _submit_proof(real_browser, provider, None)
    assert "Location" not in response.headers
    assert response.status_code in (200, 403)
    audited = _audit(app, "user:u-alice")
    assert audited and audited[0].outcome == "block"
    assert audited[0].detail["reasons"] == ["device_unknown"]


def test_device_of_another_user_is_blocked(
    app: Flask, provider: OIDCProvider, real_browser: Browser
) -> None:
    _add_user(app, "u-bob", "bob")
    bobs = _enrolled(app, Platform.LINUX, DeviceTraits(), user="u-bob")
    response = _submit_proof(real_browser, provider, bobs)
    assert "Location" not in response.headers
    audited = _audit(app, bobs.device_id)
    assert audited and audited[0].outcome == "block"
    assert "device_not_owned" in audited[0].detail["reasons"]


def test_proof_for_another_audience_is_refused(
    app: Flask, provider: OIDCProvider, real_browser: Browser
) -> None:
    dev = _enrolled(app, Platform.LINUX, DeviceTraits())
    assert real_browser.authorize().status_code == 303
    assert real_browser.login().status_code == 303
    csrf, nonce = real_browser.device_page()
    proof = dev.login_proof(audience="https://evil.example", nonce=nonce)
    response = real_browser.client.post(
        "/login/device", data={"csrf_token": csrf, "nonce": nonce, "proof": proof}
    )
    assert "Location" not in response.headers
    audited = _audit(app, "user:u-alice")
    assert audited and audited[0].outcome == "block"
    assert audited[0].detail["reasons"] == ["wrong_target"]
