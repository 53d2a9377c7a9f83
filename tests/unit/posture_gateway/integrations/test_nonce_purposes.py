"""Issue 7 finding 11: a nonce is bound to its purpose and audience.

A nonce the browser login hands out (``GET /login/device``) cannot be spent by the posture
API, and a nonce from ``POST /api/v1/nonce`` cannot be spent by the browser login — nor by
another API caller. A nonce presented to the wrong door is refused AND stays live for its
own door (nothing is consumed that should not be).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask

from mdm_core.posture.model import Platform
from mdm_core.simulator.reports import DeviceTraits
from tests.integration.oidc.conftest import Browser, write_files
from tests.unit.posture_gateway.integrations.conftest import PUBLIC_URL
from tests.unit.posture_gateway.integrations.test_posture_api import (
    PINNED_PEM,
    URL,
    bearer,
    integration_settings,  # noqa: F401 - the fixture: a pinned mTLS caller besides okta-idp
    issue,
)
from tests.unit.posture_gateway.integrations.test_posture_api_real import _device, api_nonce

AUDIENCE = f"{PUBLIC_URL}/api/v1/decision"


@pytest.fixture
def app_settings_extra(tmp_path: Path) -> dict[str, Any]:
    files = tmp_path / "files"
    files.mkdir()
    clients, users = write_files(files)
    return {"oidc": {"clients_file": clients, "users_file": users}}


def _login_nonce(app: Flask) -> tuple[Browser, str, str]:
    """A browser login up to the device check: the page's CSRF token and its nonce."""
    browser = Browser(app.test_client())
    assert browser.authorize().status_code == 303
    assert browser.login().status_code == 303
    csrf, nonce = browser.device_page()
    return browser, csrf, nonce


def _decide(app: Flask, proof: str, token: str | None = None) -> dict[str, Any]:
    body = {"user": "alice", "client_id": "payroll", "device_proof": proof}
    response = app.test_client().post(URL, json=body, headers=bearer(token or issue(app)))
    assert response.status_code == 200, response.get_data(as_text=True)
    return dict(response.json)


def test_nonce_endpoint_answers_nonce_audience_and_expiry(app: Flask) -> None:
    answer = api_nonce(app)
    assert len(answer["nonce"]) >= 40
    assert answer["audience"] == AUDIENCE
    assert 0 < answer["expires_in"] <= 120
    assert answer["expires_at"].endswith("+00:00")
    assert api_nonce(app)["nonce"] != answer["nonce"]


def test_nonce_endpoint_is_authenticated_like_the_decision(app: Flask) -> None:
    client = app.test_client()
    response = client.post("/api/v1/nonce")
    assert response.status_code == 401 and response.json["error"] == "unauthorized"
    response = client.post("/api/v1/nonce", headers=bearer(issue(app, scope="openid")))
    assert response.status_code == 403 and response.json["error"] == "insufficient_scope"
    response = client.post("/api/v1/nonce", headers=bearer("not-a-token"))
    assert response.status_code == 401 and response.json["outcome"] == "block"


def test_the_documented_sequence_decides(app: Flask) -> None:
    dev = _device(app, Platform.LINUX, DeviceTraits())
    answer = api_nonce(app)
    proof = dev.login_proof(audience=answer["audience"], nonce=answer["nonce"])
    decision = _decide(app, proof)
    assert decision["outcome"] in {"allow", "warn"}, decision
    assert decision["device_id"] == dev.device_id


def test_a_login_nonce_is_refused_by_the_api_and_not_spent(app: Flask) -> None:
    dev = _device(app, Platform.LINUX, DeviceTraits())
    browser, csrf, login_nonce = _login_nonce(app)
    # The attacker has the device sign a proof for the API over the LOGIN's nonce.
    decision = _decide(app, dev.login_proof(audience=AUDIENCE, nonce=login_nonce))
    assert decision["outcome"] == "block"
    assert decision["reasons"][0]["code"] == "nonce_invalid"
    # The login's nonce is still live for the login: its device check is not "replayed".
    proof = dev.login_proof(audience="http://localhost", nonce=login_nonce)
    response = browser.client.post(
        "/login/device", data={"csrf_token": csrf, "nonce": login_nonce, "proof": proof}
    )
    assert "nonce_replayed" not in response.get_data(as_text=True)
    assert "nonce_mismatch" not in response.get_data(as_text=True)


def test_an_api_nonce_is_refused_by_the_login_and_not_spent(app: Flask) -> None:
    dev = _device(app, Platform.LINUX, DeviceTraits())
    answer = api_nonce(app)
    browser, csrf, _ = _login_nonce(app)
    response = browser.client.post(
        "/login/device",
        data={
            "csrf_token": csrf,
            "nonce": answer["nonce"],
            "proof": dev.login_proof(audience="http://localhost", nonce=answer["nonce"]),
        },
    )
    assert response.status_code == 400
    assert "code" not in response.headers.get("Location", "")
    # ... and the API nonce still serves its own request.
    decision = _decide(app, dev.login_proof(audience=AUDIENCE, nonce=answer["nonce"]))
    assert decision["outcome"] in {"allow", "warn"}, decision


def test_a_nonce_of_another_api_caller_is_refused_and_not_spent(app: Flask) -> None:
    dev = _device(app, Platform.LINUX, DeviceTraits())
    mtls = {"X-Client-Cert": quote(PINNED_PEM)}
    other = app.test_client().post("/api/v1/nonce", headers=mtls).json  # caller edge-proxy
    proof = dev.login_proof(audience=AUDIENCE, nonce=other["nonce"])
    decision = _decide(app, proof)  # presented by okta-idp
    assert decision["outcome"] == "block" and decision["reasons"][0]["code"] == "nonce_invalid"
    body = {"user": "alice", "client_id": "payroll", "device_proof": proof}
    own = app.test_client().post(URL, json=body, headers=mtls).json
    assert own["outcome"] in {"allow", "warn"}, own


def test_nonce_store_down_is_503_and_block(app: Flask) -> None:
    from posture_gateway.integrations.state import integrations

    class Broken:
        def issue(self, *_: Any, **__: Any) -> str:
            raise ConnectionError("store down")

        def consume(self, *_: Any, **__: Any) -> bool:
            raise ConnectionError("store down")

    integrations(app).nonces = Broken()
    response = app.test_client().post("/api/v1/nonce", headers=bearer(issue(app)))
    assert response.status_code == 503
    assert response.json == {
        "error": "nonce_unavailable",
        "reason": "cannot issue a nonce now",
        "outcome": "block",
    }


def test_openapi_documents_the_whole_sequence(app: Flask) -> None:
    document = app.test_client().get("/openapi.json").json
    nonce_op = document["paths"]["/api/v1/nonce"]["post"]
    decide_op = document["paths"]["/api/v1/decision"]["post"]
    assert nonce_op["security"] == decide_op["security"]
    schema = document["components"]["schemas"]["NonceResponseBody"]
    assert set(schema["required"]) == {"nonce", "audience", "expires_at", "expires_in"}
    for text in (
        nonce_op["description"],
        decide_op["description"],
        document["info"]["description"],
    ):
        assert "/api/v1/nonce" in text and "device_proof" in text
