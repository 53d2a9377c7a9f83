"""Broker mode against a real upstream IdP: npm ``oidc-provider`` on an ephemeral port.

The gateway's login (``/oauth/authorize`` from a relying party) offers the upstream; our broker
runs discovery, code + PKCE + state + nonce, the token request and ID token validation against
the independent implementation, maps the upstream user to our directory user and continues to
the device check — and, with a device gate that allows, all the way to the relying party's
tokens for OUR user. Failure paths: the upstream refuses (error=access_denied), a forged or
replayed callback, an unknown user, an unreachable upstream — each ends on an error page and
the login does not continue.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp_connectors.identity import ExternalIdentity
from idp_connectors.oidc_upstream import UpstreamOidcSettings
from mdm_core.access.decision import Decision
from mdm_core.access.request import AccessRequest
from posture_gateway.app import GatewayState, create_app
from posture_gateway.integrations.settings import IntegrationSettings
from posture_gateway.integrations.state import integrations
from posture_gateway.oidc.authn import AuthenticatedUser
from posture_gateway.oidc.server import EXTENSION_KEY as OIDC_EXTENSION_KEY
from posture_gateway.oidc.server import OIDCProvider
from posture_gateway.settings import Settings
from tests.peers.upstream_idp import UpstreamIdp

pytestmark = pytest.mark.peer

PUBLIC_URL = "http://127.0.0.1:8000"
CALLBACK = f"{PUBLIC_URL}/login/upstream/corp/callback"
RP_REDIRECT = "http://127.0.0.1:9999/cb"
UPSTREAM_SECRET = "upstream-client-secret-" + "x" * 16


class Directory:
    """Test directory: maps (issuer, subject) to our user ids."""

    def __init__(self) -> None:
        self.users: dict[tuple[str, str], str] = {}
        self.seen: list[ExternalIdentity] = []

    def resolve(self, identity: ExternalIdentity) -> str | None:
        self.seen.append(identity)
        return self.users.get((identity.issuer, identity.subject))


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamIdp]:
    idp = UpstreamIdp("gateway", UPSTREAM_SECRET, CALLBACK, account_id="alice").start()
    try:
        yield idp
    finally:
        idp.stop()


def _app(tmp_path: Path, upstream_settings: UpstreamOidcSettings) -> Flask:
    tmp_path.mkdir(parents=True, exist_ok=True)
    clients = tmp_path / "clients.yaml"
    clients.write_text(
        "clients:\n"
        "  - client_id: rp\n"
        "    token_endpoint_auth_method: none\n"
        f"    redirect_uris: ['{RP_REDIRECT}']\n"
        "    scopes: [openid, profile, email]\n",
        encoding="utf-8",
    )
    settings = Settings(
        data_dir=tmp_path,
        dev_mode=True,
        public_url=PUBLIC_URL,
        oidc={"clients_file": clients},
        integrations=IntegrationSettings(upstreams=(upstream_settings,)),
    )
    return create_app(settings)


@pytest.fixture
def directory() -> Directory:
    return Directory()


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[[UpstreamOidcSettings], Flask]]:
    apps: list[Flask] = []

    def make(upstream_settings: UpstreamOidcSettings) -> Flask:
        apps.append(_app(tmp_path / str(len(apps)), upstream_settings))
        return apps[-1]

    yield make
    for app in apps:
        integrations(app).close()
        state(app).core.close()


@pytest.fixture
def app(
    make_app: Callable[[UpstreamOidcSettings], Flask], upstream: UpstreamIdp, directory: Directory
) -> Flask:
    settings = UpstreamOidcSettings(
        name="corp", issuer=upstream.issuer, client_id="gateway", client_secret=UPSTREAM_SECRET
    )
    app = make_app(settings)
    integrations(app).user_directory = directory
    directory.users[(upstream.issuer, "alice")] = "u-alice"
    return app


def state(app: Flask) -> GatewayState:
    st = app.extensions["posture"]
    assert isinstance(st, GatewayState)
    return st


def _start_login(client: FlaskClient) -> str:
    """Start a login at our OP as relying party "rp"; returns the PKCE verifier."""
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    query = urlencode(
        {
            "client_id": "rp",
            "redirect_uri": RP_REDIRECT,
            "response_type": "code",
            "scope": "openid profile",
            "state": "rp-state",
            "nonce": "rp-nonce",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    response = client.get(f"/oauth/authorize?{query}")
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    return verifier


def _go_upstream(client: FlaskClient) -> str:
    """Pick the upstream on the login page; returns the upstream authorization URL."""
    response = client.get("/login/with/upstream-corp")
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    return response.headers["Location"]


def _browse_upstream(url: str, stop_prefix: str = CALLBACK) -> str:
    """Follow the upstream's redirects like a browser until it sends us back; returns that URL."""
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        for _ in range(20):
            if url.startswith(stop_prefix):
                return url
            response = browser.get(url)
            assert response.status_code in (302, 303), (response.status_code, response.text[:500])
            url = str(response.url.join(response.headers["location"]))
    raise AssertionError("the upstream never redirected back")


def _callback_path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def test_login_through_the_upstream_reaches_the_device_check(
    app: Flask, upstream: UpstreamIdp, directory: Directory
) -> None:
    client = app.test_client()
    _start_login(client)
    authorize_url = _go_upstream(client)
    params = parse_qs(urlsplit(authorize_url).query)
    assert authorize_url.startswith(f"{upstream.issuer}/auth?")
    assert params["code_challenge_method"] == ["S256"]
    assert params["response_type"] == ["code"]
    assert params["state"][0] and params["nonce"][0]
    callback_url = _browse_upstream(authorize_url)
    assert "code=" in callback_url
    response = client.get(_callback_path(callback_url))
    assert response.status_code == 303, response.get_data(as_text=True)[:800]
    assert response.headers["Location"].endswith("/login/device")
    identity = directory.seen[-1]
    assert identity.issuer == upstream.issuer
    assert identity.subject == "alice"
    assert identity.email == "alice@upstream.example" and identity.email_verified
    page = client.get("/login/device")
    assert page.status_code == 200  # D1's device check page, for the user the upstream vouched


def test_broker_hands_the_mapped_user_to_the_login_flow(app: Flask, upstream: UpstreamIdp) -> None:
    handed: list[tuple[AuthenticatedUser, str]] = []

    def complete(user: AuthenticatedUser, *, login_id: str) -> Any:
        handed.append((user, login_id))
        return "continued"

    integrations(app).complete_authentication = complete
    client = app.test_client()
    _start_login(client)
    callback_url = _browse_upstream(_go_upstream(client))
    response = client.get(_callback_path(callback_url))
    assert response.get_data(as_text=True) == "continued"
    user, login_id = handed[0]
    assert user.user_id == "u-alice"
    assert user.username == "alice"
    assert user.amr == ("fed",)
    assert user.source == "upstream:corp"
    assert login_id


def test_callback_replay_is_refused(app: Flask) -> None:
    client = app.test_client()
    _start_login(client)
    callback_path = _callback_path(_browse_upstream(_go_upstream(client)))
    assert client.get(callback_path).status_code == 303
    again = client.get(callback_path)  # state is single use
    assert again.status_code == 403
    assert b"upstream.state_mismatch" in again.data


def test_forged_state_is_refused(app: Flask) -> None:
    client = app.test_client()
    _start_login(client)
    callback_url = _browse_upstream(_go_upstream(client))
    parts = parse_qs(urlsplit(callback_url).query)
    forged = client.get(
        "/login/upstream/corp/callback?" + urlencode({"code": parts["code"][0], "state": "forged"})
    )
    assert forged.status_code == 403
    assert b"upstream.state_mismatch" in forged.data


def test_unknown_user_gets_no_login(app: Flask, directory: Directory) -> None:
    directory.users.clear()
    client = app.test_client()
    _start_login(client)
    response = client.get(_callback_path(_browse_upstream(_go_upstream(client))))
    assert response.status_code == 403
    assert b"user.unknown" in response.data
    assert client.get("/login/device").status_code != 200  # the login did not continue


def test_upstream_refusal_ends_on_an_error_page(
    make_app: Callable[[UpstreamOidcSettings], Flask], upstream: UpstreamIdp, directory: Directory
) -> None:
    settings = UpstreamOidcSettings(
        name="corp", issuer=upstream.issuer, client_id="deny-client", client_secret=UPSTREAM_SECRET
    )
    app = make_app(settings)
    integrations(app).user_directory = directory
    client = app.test_client()
    _start_login(client)
    response = client.get(_callback_path(_browse_upstream(_go_upstream(client))))
    assert response.status_code == 403
    assert b"upstream.denied" in response.data
    assert b"No access was granted" in response.data


def test_wrong_client_secret_is_an_upstream_refusal(
    make_app: Callable[[UpstreamOidcSettings], Flask], upstream: UpstreamIdp, directory: Directory
) -> None:
    settings = UpstreamOidcSettings(
        name="corp", issuer=upstream.issuer, client_id="gateway", client_secret="wrong-secret"
    )
    app = make_app(settings)
    integrations(app).user_directory = directory
    client = app.test_client()
    _start_login(client)
    response = client.get(_callback_path(_browse_upstream(_go_upstream(client))))
    assert response.status_code == 403
    assert b"upstream.denied" in response.data


def test_issuer_mismatch_in_discovery_refuses_to_start(
    make_app: Callable[[UpstreamOidcSettings], Flask], upstream: UpstreamIdp
) -> None:
    settings = UpstreamOidcSettings(
        name="corp",
        issuer=upstream.issuer + "/other",
        discovery_url=upstream.issuer + "/.well-known/openid-configuration",
        client_id="gateway",
        client_secret=UPSTREAM_SECRET,
    )
    client = make_app(settings).test_client()
    _start_login(client)
    response = client.get("/login/with/upstream-corp")
    assert response.status_code == 502
    assert b"upstream.protocol" in response.data


def test_unreachable_upstream_fails_closed(
    make_app: Callable[[UpstreamOidcSettings], Flask],
) -> None:
    from tests.services import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    settings = UpstreamOidcSettings(
        name="corp", issuer=dead, client_id="gateway", client_secret=UPSTREAM_SECRET
    )
    client = make_app(settings).test_client()
    _start_login(client)
    response = client.get("/login/with/upstream-corp")
    assert response.status_code == 502
    assert b"upstream.unavailable" in response.data


class AllowGate:
    """The device gate the lead wires later; here: every device is healthy."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def decide(self, request: AccessRequest) -> Decision:
        self.calls.append({"user_id": request.user_id, "proof": request.device_proof})
        return Decision(outcome="allow")

    def recheck(self, **kwargs: Any) -> Decision:
        return Decision(outcome="allow")

    def still_bound(self, subject: Any) -> bool:  # no real device behind this stub
        return True


def _form_value(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} in page"
    return match.group(1)


def test_full_broker_login_ends_with_tokens_for_the_mapped_user(app: Flask) -> None:
    provider = app.extensions[OIDC_EXTENSION_KEY]
    assert isinstance(provider, OIDCProvider)
    gate = AllowGate()
    provider.gate = provider.binding = gate
    client = app.test_client()
    verifier = _start_login(client)
    response = client.get(_callback_path(_browse_upstream(_go_upstream(client))))
    assert response.status_code == 303
    page = client.get("/login/device").get_data(as_text=True)
    submitted = client.post(
        "/login/device",
        data={
            "csrf_token": _form_value(page, "csrf_token"),
            "nonce": _form_value(page, "nonce"),
            "proof": "device-proof",
        },
    )
    assert submitted.status_code == 302, submitted.get_data(as_text=True)[:800]
    redirect_to = submitted.headers["Location"]
    assert redirect_to.startswith(RP_REDIRECT + "?")
    query = parse_qs(urlsplit(redirect_to).query)
    assert query["state"] == ["rp-state"]
    tokens = client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": RP_REDIRECT,
            "code_verifier": verifier,
            "client_id": "rp",
        },
    )
    assert tokens.status_code == 200, tokens.get_data(as_text=True)
    id_token = provider.issuer.verify_id_token(tokens.json["id_token"], audience="rp")
    assert id_token["sub"] == "u-alice"  # our directory user, not the upstream's subject
    assert id_token["nonce"] == "rp-nonce"
    assert gate.calls[0]["user_id"] == "u-alice"
