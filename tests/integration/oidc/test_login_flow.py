"""The login flow end to end through Flask's test client: authorize, login, device, code."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from mdm_core.access.decision import Decision, Reason
from posture_gateway.oidc.server import OIDCProvider
from tests.integration.oidc.conftest import (
    ISSUER,
    PUBLIC_REDIRECT,
    REDIRECT,
    Browser,
    StubGate,
    form_value,
)


def _id_token(provider: OIDCProvider, token: str, aud: str = "conf") -> dict[str, object]:
    key = provider.keys.active("RS256")
    return jwt.decode(
        token,
        key.public_key,
        algorithms=["RS256"],
        audience=aud,
        issuer=ISSUER,
        options={"require": ["exp", "iat", "sub", "nonce"]},
    )


def test_allow_issues_code_and_tokens_with_posture_claims(
    browser: Browser, provider: OIDCProvider, gate: StubGate
) -> None:
    code = browser.full_login()
    response = browser.exchange(code)
    assert response.status_code == 200, response.json
    body = response.json
    assert response.headers["Cache-Control"] == "no-store"
    assert body["token_type"] == "Bearer" and body["refresh_token"]
    claims = _id_token(provider, body["id_token"])
    assert claims["sub"] == "u-alice" and claims["nonce"] == browser.nonce
    assert claims["acr"] == "urn:posture-gateway:acr:managed-device"
    assert claims["amr"] == ["pwd", "hwk"]
    assert claims["device_id"] == "dev-1" and claims["compliance_state"] == "compliant"
    assert claims["posture_policy_ids"] == ["baseline"] and claims["posture_outcome"] == "allow"
    assert claims["email"] == "alice@example.com" and claims["name"] == "Alice Example"
    assert "at_hash" in claims
    # The evaluator saw who, for which client, with the proof and the nonce it was bound to.
    (call,) = gate.calls
    assert call.user_id == "u-alice" and call.application == "conf" and call.channel == "oidc"
    assert call.device_proof == "proof-jwt" and call.proof_nonce
    assert call.proof_audience == provider.issuer.issuer
    userinfo = browser.client.get(
        "/oauth/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert userinfo.status_code == 200
    assert userinfo.json == {
        "sub": "u-alice",
        "email": "alice@example.com",
        "name": "Alice Example",
        "preferred_username": "alice",
    }


def test_public_client_with_pkce(public_browser: Browser, provider: OIDCProvider) -> None:
    code = public_browser.full_login()
    response = public_browser.exchange(code)
    assert response.status_code == 200, response.json
    claims = _id_token(provider, response.json["id_token"], aud="pub")
    assert "name" not in claims and claims["email"] == "alice@example.com"
    assert "refresh_token" not in response.json  # pub may not use refresh_token


def test_restrict_narrows_scopes(browser: Browser, gate: StubGate) -> None:
    gate.verdict = Decision(
        outcome="restrict", device_id="dev-1", allowed_scopes=frozenset({"openid"})
    )
    response = browser.exchange(browser.full_login())
    assert response.status_code == 200
    assert response.json["scope"] == "openid"
    info = browser.client.get(
        "/oauth/userinfo", headers={"Authorization": f"Bearer {response.json['access_token']}"}
    )
    assert info.json == {"sub": "u-alice"}


def test_restrict_never_widens(browser: Browser, gate: StubGate) -> None:
    gate.verdict = Decision(
        outcome="restrict", allowed_scopes=frozenset({"openid", "email", "offline_access"})
    )
    browser.scope = "openid profile"
    response = browser.exchange(browser.full_login())
    assert response.json["scope"] == "openid"


def test_warn_shows_notice_then_continues_once(browser: Browser, gate: StubGate) -> None:
    gate.verdict = Decision(
        outcome="warn",
        device_id="dev-1",
        reasons=(Reason("os_outdated", "Your operating system is out of date."),),
        remediation=("Install the latest update.",),
        deadline=datetime(2030, 1, 2, 3, 4, tzinfo=UTC),
    )
    browser.authorize()
    browser.login()
    page = browser.submit_device()
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Your operating system is out of date." in html and "2030-01-02 03:04 UTC" in html
    assert "Install the latest update." in html
    data = {
        "csrf_token": form_value(html, "csrf_token"),
        "ticket": form_value(html, "ticket"),
    }
    code = browser.code_from(browser.client.post("/login/continue", data=data))
    assert browser.exchange(code).status_code == 200
    again = browser.client.post("/login/continue", data=data)
    assert again.status_code == 400 and "Location" not in again.headers


def test_block_shows_remediation_and_check_again(browser: Browser, gate: StubGate) -> None:
    gate.verdict = Decision(
        outcome="block",
        reasons=(Reason("encryption_off", "Disk encryption is turned off.", "baseline"),),
        remediation=("Turn on FileVault in System Settings.",),
    )
    browser.authorize()
    browser.login()
    page = browser.submit_device()
    assert page.status_code == 403 and "Location" not in page.headers
    html = page.get_data(as_text=True)
    assert "Disk encryption is turned off." in html and "Turn on FileVault" in html
    assert 'data-reason="encryption_off"' in html and "/login/device" in html
    # "Check again" restarts the device check with a fresh nonce; now healthy.
    gate.verdict = Decision(outcome="allow", device_id="dev-1")
    first_nonce = gate.calls[0].proof_nonce
    code = browser.code_from(browser.submit_device())
    assert gate.calls[1].proof_nonce != first_nonce
    assert browser.exchange(code).status_code == 200


def test_failing_gate_blocks(browser: Browser, gate: StubGate) -> None:
    gate.raises = True
    browser.authorize()
    browser.login()
    page = browser.submit_device()
    assert page.status_code == 403
    assert 'data-reason="device_check_failed"' in page.get_data(as_text=True)


def test_unconfigured_gate_blocks_everyone(app: object, provider: OIDCProvider) -> None:
    from mdm_core.access.evaluator import AccessEvaluator

    # create_app wires the one evaluator; without one every login is blocked
    assert isinstance(provider.gate, AccessEvaluator)
    provider.gate = None
    browser = Browser(app.test_client())  # type: ignore[attr-defined]
    browser.authorize()
    browser.login()
    page = browser.submit_device()
    assert page.status_code == 403
    assert "device_gate_not_configured" in page.get_data(as_text=True)


def test_nonce_replay_in_same_session_is_refused(browser: Browser, gate: StubGate) -> None:
    browser.authorize()
    browser.login()
    csrf, nonce = browser.device_page()
    data = {"csrf_token": csrf, "nonce": nonce, "proof": "p"}
    gate.verdict = Decision(outcome="block", reasons=(Reason("x", "x"),))
    assert browser.client.post("/login/device", data=data).status_code == 403
    replay = browser.client.post("/login/device", data=data)
    assert replay.status_code == 400
    assert 'data-error="nonce_mismatch"' in replay.get_data(as_text=True)
    assert len(gate.calls) == 1


def test_nonce_replay_with_old_cookie_is_refused(browser: Browser, gate: StubGate) -> None:
    browser.authorize()
    browser.login()
    csrf, nonce = browser.device_page()
    cookie = browser.client.get_cookie("session")
    assert cookie is not None
    saved = cookie.value
    data = {"csrf_token": csrf, "nonce": nonce, "proof": "p"}
    browser.code_from(browser.client.post("/login/device", data=data))
    # Restore the session cookie as it was before the submit and replay the same nonce.
    browser.client.set_cookie("session", saved, domain="localhost")
    replay = browser.client.post("/login/device", data=data)
    assert replay.status_code == 400
    # The transaction lives server side and was ended by the code: the old cookie names a
    # transaction that no longer exists, so the replay stops before the nonce is looked at.
    assert 'data-error="login_expired"' in replay.get_data(as_text=True)
    assert len(gate.calls) == 1


def test_wrong_nonce_is_refused(browser: Browser, gate: StubGate) -> None:
    browser.authorize()
    browser.login()
    csrf, _ = browser.device_page()
    page = browser.client.post("/login/device", data={"csrf_token": csrf, "nonce": "guess"})
    assert page.status_code == 400 and gate.calls == []


@pytest.mark.parametrize("path", ["/login/password", "/login/device"])
def test_csrf_missing_or_wrong_is_refused(browser: Browser, gate: StubGate, path: str) -> None:
    browser.authorize()
    if path == "/login/device":
        browser.login()
        _, nonce = browser.device_page()
        data = {"nonce": nonce, "proof": "p"}
    else:
        data = {"username": "alice", "password": "alice-password-1"}
    assert browser.client.post(path, data=data).status_code == 403
    assert browser.client.post(path, data={**data, "csrf_token": "forged"}).status_code == 403
    assert gate.calls == []


def test_device_check_needs_a_logged_in_user(browser: Browser, gate: StubGate) -> None:
    browser.authorize()
    assert browser.client.get("/login/device").status_code == 400
    assert browser.client.get("/login").status_code == 200


def test_no_login_transaction(browser: Browser) -> None:
    for path in ("/login", "/login/device"):
        page = browser.client.get(path)
        assert page.status_code == 400
        assert "login_expired" in page.get_data(as_text=True)


def test_wrong_password_and_rate_limit(browser: Browser) -> None:
    browser.authorize()
    for _ in range(3):
        page = browser.login(password="wrong")
        assert page.status_code == 401
        assert "not right" in page.get_data(as_text=True)
    limited = browser.login()  # even the right password, while limited
    assert limited.status_code == 429
    unknown = browser.login(username="mallory", password="x")
    assert unknown.status_code == 401


def test_pages_carry_security_headers(browser: Browser) -> None:
    browser.authorize()
    page = browser.client.get("/login")
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src 'nonce-" in csp and "unsafe-inline" not in csp
    assert page.headers["Cache-Control"] == "no-store"
    browser.login()
    device = browser.client.get("/login/device")
    csp = device.headers["Content-Security-Policy"]
    assert "connect-src http://127.0.0.1:48421" in csp
    assert "form-action 'self' https://app.example" in csp
    html = device.get_data(as_text=True)
    assert (
        "/v1/login-proof" in html and "http://" not in html.split("<script")[0].split("<main>")[1]
    )


def test_session_cookie_flags(browser: Browser) -> None:
    response = browser.authorize()
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # http issuer in tests; https issuers set Secure


def test_authorize_post_is_accepted(browser: Browser) -> None:
    response = browser.client.post("/oauth/authorize", data=browser.authorize_params())
    assert response.status_code == 303


def test_authorize_redirect_target_is_exact(public_browser: Browser) -> None:
    code = public_browser.full_login()
    assert code
    assert PUBLIC_REDIRECT.startswith("http://127.0.0.1")
    assert REDIRECT != PUBLIC_REDIRECT


def test_error_redirect_carries_state(browser: Browser) -> None:
    response = browser.authorize(scope="email")  # no openid: no plain OAuth here
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["error"] == ["invalid_scope"] and query["state"] == [browser.state]
    assert query["iss"] == [ISSUER]  # RFC 9207


def test_code_redirect_names_the_issuer(browser: Browser) -> None:
    browser.authorize()
    browser.login()
    response = browser.submit_device()
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["iss"] == [ISSUER] and query["code"]


CERT_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_forwarded_device_cert_only_from_trusted_proxy(
    browser: Browser, gate: StubGate, provider: OIDCProvider
) -> None:
    from ipaddress import ip_network
    from urllib.parse import quote

    browser.authorize()
    browser.login()
    csrf, nonce = browser.device_page()
    headers = {"X-Client-Cert": quote(CERT_PEM)}
    data = {"csrf_token": csrf, "nonce": nonce}
    browser.code_from(browser.client.post("/login/device", data=data, headers=headers))
    assert gate.calls[-1].client_cert_pem is None  # test client peer is not a trusted proxy
    provider.device_cert_proxies = (ip_network("127.0.0.1/32"),)
    browser.authorize()
    browser.login()
    csrf, nonce = browser.device_page()
    data = {"csrf_token": csrf, "nonce": nonce}
    response = browser.client.post(
        "/login/device", data=data, headers=headers, environ_base={"REMOTE_ADDR": "127.0.0.1"}
    )
    browser.code_from(response)
    assert gate.calls[-1].client_cert_pem == CERT_PEM
    assert gate.calls[-1].device_proof is None
