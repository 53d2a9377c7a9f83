"""Client credentials at /oauth/token for posture-API callers, then the token at the API."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask import Flask

from posture_gateway.integrations.settings import IntegrationSettings, PostureApiSettings
from posture_gateway.oidc.passwords import hash_client_secret
from tests.unit.posture_gateway.integrations.conftest import DictDirectory, ScriptedDecisions

SECRET = "idp-client-secret-" + "z" * 24
BODY = {"user": "alice", "client_id": "payroll"}


@pytest.fixture
def integration_settings() -> IntegrationSettings:
    return IntegrationSettings(posture_api=PostureApiSettings(oauth_clients=("okta-idp",)))


@pytest.fixture
def app_settings_extra(tmp_path: Path) -> dict[str, Any]:
    clients = tmp_path / "clients.yaml"
    hashed = hash_client_secret(SECRET)
    clients.write_text(
        "clients:\n"
        + "".join(
            f"  - client_id: {cid}\n"
            f"    client_secret_hash: '{hashed}'\n"
            "    redirect_uris: ['https://unused.example/cb']\n"
            for cid in ("okta-idp", "other-rp")
        ),
        encoding="utf-8",
    )
    return {"oidc": {"clients_file": clients}}


def basic(client_id: str, secret: str = SECRET) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def token_request(app: Flask, client_id: str, **form: str) -> Any:
    return app.test_client().post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "posture.decide", **form},
        headers=basic(client_id),
    )


def test_token_then_decision(
    app: Flask, decisions: ScriptedDecisions, directory: DictDirectory
) -> None:
    directory.by_username["alice"] = "u-alice"
    response = token_request(app, "okta-idp")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["scope"] == "posture.decide"
    assert "refresh_token" not in response.json
    assert response.headers["Cache-Control"] == "no-store"
    token = response.json["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["client_id"] == claims["sub"] == "okta-idp"
    decided = app.test_client().post(
        "/api/v1/decision", json=BODY, headers={"Authorization": f"Bearer {token}"}
    )
    assert decided.status_code == 200
    assert decisions.requests[0].caller == "okta-idp"


def test_client_not_allowed(app: Flask) -> None:
    response = token_request(app, "other-rp")
    assert response.status_code in (400, 401)
    assert response.json["error"] == "unauthorized_client"


def test_wrong_secret(app: Flask) -> None:
    response = app.test_client().post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "posture.decide"},
        headers=basic("okta-idp", "wrong"),
    )
    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"


@pytest.mark.parametrize("scope", ["openid", "posture.decide openid", "admin"])
def test_other_scopes(app: Flask, scope: str) -> None:
    response = token_request(app, "okta-idp", scope=scope)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_scope"


def test_userinfo_refuses_a_machine_token(app: Flask) -> None:
    token = token_request(app, "okta-idp").json["access_token"]
    response = app.test_client().get(
        "/oauth/userinfo", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 403
