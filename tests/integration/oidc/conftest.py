"""Fixtures for the OpenID provider: an app with two relying parties, users, a test gate.

``Browser`` follows the login flow the way a user's browser would (redirects, forms with the
CSRF token, the device-check form with a proof); ``StubGate`` returns the decision a test sets
(at login and, as the provider's ``DeviceBinding``, at refresh).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from mdm_core.access.decision import Decision
from mdm_core.access.request import AccessRequest
from posture_gateway.app import create_app
from posture_gateway.oidc.passwords import hash_client_secret, hash_password
from posture_gateway.oidc.server import EXTENSION_KEY, OIDCProvider
from posture_gateway.settings import Settings

ISSUER = "http://localhost"
CONF_SECRET = "conf-secret-" + "x" * 40
REDIRECT = "https://app.example/cb"
PUBLIC_REDIRECT = "http://127.0.0.1:9999/cb"
LOGOUT = "https://app.example/bye"
PASSWORD = "alice-password-1"


@dataclass
class StubGate:
    """The access evaluator seen by the login (``decide``) and the refresh binding."""

    verdict: Decision = field(
        default_factory=lambda: Decision(
            outcome="allow",
            device_id="dev-1",
            evaluated_policy_ids=("baseline",),
            evaluated_at=datetime.fromtimestamp(1700000000, UTC),
        )
    )
    raises: bool = False
    calls: list[AccessRequest] = field(default_factory=list)
    # The DeviceBinding side (refresh decision, token lookups): the same verdict; bound.
    bound: bool = True
    rechecks: list[dict[str, Any]] = field(default_factory=list)

    def decide(self, request: AccessRequest) -> Decision:
        self.calls.append(request)
        if self.raises:
            raise RuntimeError("gate exploded")
        return self.verdict

    def recheck(self, **kwargs: Any) -> Decision:
        self.rechecks.append(kwargs)
        if self.raises:
            raise RuntimeError("gate exploded")
        return self.verdict

    def still_bound(self, subject: Any) -> bool:
        return self.bound


def write_files(tmp: Path) -> tuple[Path, Path]:
    clients = tmp / "clients.yaml"
    clients.write_text(
        f"""
clients:
  - client_id: conf
    name: Confidential App
    client_secret_hash: "{hash_client_secret(CONF_SECRET)}"
    redirect_uris: ["{REDIRECT}"]
    post_logout_redirect_uris: ["{LOGOUT}"]
    scopes: [openid, profile, email]
    grant_types: [authorization_code, refresh_token]
  - client_id: pub
    token_endpoint_auth_method: none
    redirect_uris: ["{PUBLIC_REDIRECT}"]
    scopes: [openid, email]
    id_token_signed_response_alg: RS256
""",
        encoding="utf-8",
    )
    users = tmp / "users.yaml"
    users.write_text(
        f"""
users:
  - username: alice
    user_id: u-alice
    password_hash: "{hash_password(PASSWORD, n=2**10)}"
    email: alice@example.com
    name: Alice Example
""",
        encoding="utf-8",
    )
    return clients, users


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    clients, users = write_files(tmp_path)
    return Settings.model_validate(
        {
            "data_dir": tmp_path / "data",
            "dev_mode": True,
            "public_url": ISSUER,
            "oidc": {"clients_file": clients, "users_file": users, "max_failed_logins": 3},
        }
    )


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    app.extensions["posture"].core.close()


@pytest.fixture
def provider(app: Flask) -> OIDCProvider:
    provider = app.extensions[EXTENSION_KEY]
    assert isinstance(provider, OIDCProvider)
    return provider


@pytest.fixture
def gate(provider: OIDCProvider) -> StubGate:
    gate = StubGate()
    provider.gate = gate
    provider.binding = gate
    return gate


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def form_value(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} in page"
    return match.group(1)


@dataclass
class Browser:
    client: FlaskClient
    client_id: str = "conf"
    redirect_uri: str = REDIRECT
    scope: str = "openid profile email"
    verifier: str = ""
    nonce: str = ""
    state: str = ""

    def authorize_params(self, **overrides: str | None) -> dict[str, str]:
        self.verifier, challenge = pkce()
        self.nonce = secrets.token_urlsafe(12)
        self.state = secrets.token_urlsafe(12)
        params: dict[str, str | None] = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": self.scope,
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        params.update(overrides)
        return {k: v for k, v in params.items() if v is not None}

    def authorize(self, **overrides: str | None) -> Any:
        return self.client.get("/oauth/authorize?" + urlencode(self.authorize_params(**overrides)))

    def login(self, username: str = "alice", password: str = PASSWORD) -> Any:
        page = self.client.get("/login")
        assert page.status_code == 200, page.data
        csrf = form_value(page.get_data(as_text=True), "csrf_token")
        return self.client.post(
            "/login/password",
            data={"csrf_token": csrf, "username": username, "password": password},
        )

    def device_page(self) -> tuple[str, str]:
        page = self.client.get("/login/device")
        assert page.status_code == 200, page.data
        html = page.get_data(as_text=True)
        return form_value(html, "csrf_token"), form_value(html, "nonce")

    def submit_device(self, proof: str = "proof-jwt") -> Any:
        csrf, nonce = self.device_page()
        return self.client.post(
            "/login/device", data={"csrf_token": csrf, "nonce": nonce, "proof": proof}
        )

    def code_from(self, response: Any) -> str:
        assert response.status_code == 302, response.get_data(as_text=True)
        location = response.headers["Location"]
        assert location.startswith(self.redirect_uri + "?")
        query = parse_qs(urlsplit(location).query)
        assert query["state"] == [self.state]
        return query["code"][0]

    def full_login(self, **overrides: str | None) -> str:
        assert self.authorize(**overrides).status_code == 303
        assert self.login().status_code == 303
        return self.code_from(self.submit_device())

    def exchange(self, code: str, **overrides: str | None) -> Any:
        data: dict[str, str | None] = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": self.verifier,
        }
        headers = {}
        if self.client_id == "conf":
            token = base64.b64encode(f"conf:{CONF_SECRET}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        else:
            data["client_id"] = self.client_id
        data.update(overrides)
        return self.client.post(
            "/oauth/token", data={k: v for k, v in data.items() if v is not None}, headers=headers
        )


def basic(client_id: str = "conf", secret: str = CONF_SECRET) -> dict[str, str]:
    token = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def browser(app: Flask, gate: StubGate) -> Browser:
    return Browser(app.test_client())


@pytest.fixture
def public_browser(app: Flask, gate: StubGate) -> Browser:
    return Browser(
        app.test_client(), client_id="pub", redirect_uri=PUBLIC_REDIRECT, scope="openid email"
    )
