"""Our OpenID provider, served for real, driven by an independent relying party.

The gateway runs in werkzeug's server on an ephemeral 127.0.0.1 port; npm ``openid-client``
(tests/peers/node/oidc_rp.mjs) does discovery, builds the authorization request (code, PKCE
S256, nonce, state), exchanges the code, validates the ID token (signature through our JWKS,
iss, aud, nonce, at_hash) and calls userinfo, refresh, introspection and revocation; ``jose``
verifies the ID token a second time. The browser step in between is httpx following the flow
as a user would: login form with its CSRF token, device-check form with a proof.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from werkzeug.serving import BaseWSGIServer, make_server

from posture_gateway.app import create_app
from posture_gateway.oidc.server import EXTENSION_KEY
from posture_gateway.settings import Settings
from tests.integration.oidc.conftest import (
    CONF_SECRET,
    LOGOUT,
    PASSWORD,
    REDIRECT,
    StubGate,
    write_files,
)
from tests.services import ServiceMissing

pytestmark = pytest.mark.peer

NODE_DIR = Path(__file__).resolve().parent / "node"
_INSTALL_LOCK = threading.Lock()


def ensure_openid_client() -> None:
    """``npm ci`` when the node project is not installed (node/npm from Debian)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise ServiceMissing(
            "node/npm not found: run `make system-deps` (apt-get install nodejs npm)"
        )
    with _INSTALL_LOCK:
        if (NODE_DIR / "node_modules" / "openid-client").is_dir():
            return
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=300
        )


class _Dispatch:
    """A WSGI app settable after the server bound its port (the issuer needs the port)."""

    app: Any = None

    def __call__(self, environ: Any, start_response: Any) -> Any:
        return self.app(environ, start_response)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[str, StubGate]]:
    dispatch = _Dispatch()
    server: BaseWSGIServer = make_server("127.0.0.1", 0, dispatch, threaded=True)
    issuer = f"http://127.0.0.1:{server.server_port}"
    clients, users = write_files(tmp_path)
    # The public client registered in write_files redirects to 127.0.0.1:9999.
    settings = Settings.model_validate(
        {
            "data_dir": tmp_path / "data",
            "dev_mode": True,
            "public_url": issuer,
            "oidc": {"clients_file": clients, "users_file": users},
        }
    )
    app = create_app(settings)
    gate = StubGate()
    app.extensions[EXTENSION_KEY].gate = gate
    app.extensions[EXTENSION_KEY].binding = gate  # refresh decisions and token lookups
    dispatch.app = app
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer, gate
    finally:
        server.shutdown()
        thread.join(timeout=10)
        app.extensions["posture"].core.close()


def _field(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} field"
    return match.group(1)


def browse(authorization_url: str, redirect_uri: str) -> str:
    """Follow the login as a user's browser would; return the URL we are sent back to."""

    def next_url(response: httpx.Response) -> str:
        return urljoin(str(response.url), response.headers["Location"])

    with httpx.Client(follow_redirects=False, timeout=30) as browser:
        response = browser.get(authorization_url)
        assert response.status_code == 303, response.text
        login = browser.get(next_url(response))
        assert login.status_code == 200
        response = browser.post(
            urljoin(str(login.url), "/login/password"),
            data={
                "csrf_token": _field(login.text, "csrf_token"),
                "username": "alice",
                "password": PASSWORD,
            },
        )
        assert response.status_code == 303, response.text
        device = browser.get(next_url(response))
        assert device.status_code == 200
        response = browser.post(
            urljoin(str(device.url), "/login/device"),
            data={
                "csrf_token": _field(device.text, "csrf_token"),
                "nonce": _field(device.text, "nonce"),
                "proof": "agent-proof",
            },
        )
        assert response.status_code == 302, response.text
        location = response.headers["Location"]
        assert location.startswith(redirect_uri + "?")
        return location


def run_rp(
    issuer: str, *, client_id: str, secret: str, redirect_uri: str, scope: str
) -> dict[str, Any]:
    ensure_openid_client()
    env = {
        **os.environ,
        "ISSUER": issuer,
        "CLIENT_ID": client_id,
        "CLIENT_SECRET": secret,
        "REDIRECT_URI": redirect_uri,
        "SCOPE": scope,
        "LOGOUT_URI": LOGOUT,
    }
    with subprocess.Popen(
        ["node", "oidc_rp.mjs"],
        cwd=NODE_DIR,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None and process.stdin is not None
            first = json.loads(process.stdout.readline() or '{"ok": false}')
            assert "authorization_url" in first, (
                first,
                process.stderr.read() if process.stderr else "",
            )
            callback = browse(first["authorization_url"], redirect_uri)
            process.stdin.write(callback + "\n")
            process.stdin.flush()
            line = process.stdout.readline()
            assert line, process.stderr.read() if process.stderr else "no output"
            result: dict[str, Any] = json.loads(line)
            result["discovery"] = first["discovery"]
            result["callback"] = callback
            process.wait(timeout=60)
            return result
        finally:
            if process.poll() is None:
                process.kill()


def test_confidential_client_full_flow(gateway: tuple[str, StubGate]) -> None:
    issuer, gate = gateway
    result = run_rp(
        issuer,
        client_id="conf",
        secret=CONF_SECRET,
        redirect_uri=REDIRECT,
        scope="openid profile email",
    )
    assert result["ok"] is True, result
    assert result["discovery"]["code_challenge_methods_supported"] == ["S256"]
    claims = result["id_token_claims"]
    assert claims["iss"] == issuer and claims["aud"] == "conf" and claims["sub"] == "u-alice"
    assert claims["device_id"] == "dev-1" and claims["posture_outcome"] == "allow"
    assert claims["acr"] == "urn:posture-gateway:acr:managed-device" and claims["amr"] == [
        "pwd",
        "hwk",
    ]
    assert result["jose_header"]["alg"] == "RS256" and result["jose_header"]["kid"]
    assert result["userinfo"]["email"] == "alice@example.com"
    assert result["refresh_rotated"] is True
    assert result["userinfo_after_refresh"]["sub"] == "u-alice"
    assert result["introspection_active"]["active"] is True
    assert result["introspection_after_revoke"] == {"active": False}
    assert result["reuse_error"] == "invalid_grant"
    assert gate.calls and gate.calls[0].device_proof == "agent-proof"
    # The end-session URL the RP built is honoured, to the registered URI only.
    with httpx.Client(follow_redirects=False) as browser:
        bye = browser.get(result["end_session_url"])
    assert bye.status_code == 303 and bye.headers["Location"] == LOGOUT + "?state=bye"


def test_public_client_full_flow(gateway: tuple[str, StubGate]) -> None:
    issuer, _ = gateway
    redirect_uri = "http://127.0.0.1:9999/cb"
    result = run_rp(
        issuer, client_id="pub", secret="", redirect_uri=redirect_uri, scope="openid email"
    )
    assert result["ok"] is True, result
    assert result["id_token_claims"]["aud"] == "pub"
    assert "refresh_rotated" not in result  # no refresh token for pub
    assert result["reuse_error"] == "invalid_grant"
    assert result["access_after_reuse"] == 401  # code reuse revoked the first exchange's tokens
    assert parse_qs(urlsplit(result["callback"]).query)["code"]
