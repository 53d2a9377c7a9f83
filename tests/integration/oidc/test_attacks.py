"""Attacks on the OpenID provider: redirect URIs, PKCE, codes, tokens, open redirects."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from posture_gateway.oidc.server import OIDCProvider
from tests.integration.oidc.conftest import (
    CONF_SECRET,
    LOGOUT,
    REDIRECT,
    Browser,
    StubGate,
    basic,
)

# ---- authorize: refused WITHOUT a redirect when client or redirect URI is not trusted ----


@pytest.mark.parametrize(
    "redirect_uri",
    [
        REDIRECT + "/",  # extra slash
        REDIRECT.replace("/cb", "//cb"),
        REDIRECT + "?x=1",
        REDIRECT.upper(),
        "https://app.example.evil.com/cb",
        "https://evil.example/cb",
        REDIRECT + "#frag",
        None,  # missing: OIDC requires it
    ],
)
def test_bad_redirect_uri_is_refused_without_redirect(
    browser: Browser, redirect_uri: str | None
) -> None:
    response = browser.authorize(redirect_uri=redirect_uri)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "error" in response.get_data(as_text=True)


@pytest.mark.parametrize("client_id", ["nope", None, ""])
def test_unknown_client_is_refused_without_redirect(
    browser: Browser, client_id: str | None
) -> None:
    response = browser.authorize(client_id=client_id)
    assert response.status_code == 400 and "Location" not in response.headers


def _error_of(response: object) -> str:
    location = response.headers["Location"]  # type: ignore[attr-defined]
    assert location.startswith(REDIRECT + "?")
    return parse_qs(urlsplit(location).query)["error"][0]


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),  # no PKCE
        ({"code_challenge_method": None}, "invalid_request"),  # method defaults to plain: no
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "short"}, "invalid_request"),
        ({"nonce": None}, "invalid_request"),
        # (unknown scopes and scopes the client may not have are ignored, not refused:
        # tests/integration/oidc/test_scopes_and_claims.py)
        ({"scope": "email", "nonce": None}, "invalid_scope"),  # no openid: no plain OAuth
        ({"scope": "admin email"}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": "code id_token"}, "unsupported_response_type"),
        ({"prompt": "none"}, "login_required"),  # never an SSO session: always log in
    ],
)
def test_bad_requests_go_back_to_the_trusted_redirect(
    browser: Browser, overrides: dict[str, str | None], error: str
) -> None:
    response = browser.authorize(**overrides)
    assert response.status_code == 302
    assert _error_of(response) == error


def test_duplicate_parameters_are_refused(browser: Browser) -> None:
    params = browser.authorize_params()
    query = urlencode(params) + "&" + urlencode({"redirect_uri": "https://evil.example/cb"})
    response = browser.client.get("/oauth/authorize?" + query)
    assert response.status_code == 400 and "Location" not in response.headers


def test_nonce_reuse_for_the_same_client_is_refused(browser: Browser) -> None:
    browser.full_login()
    nonce = browser.nonce
    response = browser.authorize(nonce=nonce)
    assert _error_of(response) == "invalid_request"


# ---- token endpoint ---------------------------------------------------------------------


def test_wrong_verifier_fails(browser: Browser) -> None:
    code = browser.full_login()
    response = browser.exchange(code, code_verifier="A" * 64)
    assert response.status_code == 400 and response.json["error"] == "invalid_grant"


def test_missing_verifier_fails(browser: Browser) -> None:
    code = browser.full_login()
    response = browser.exchange(code, code_verifier=None)
    assert response.status_code == 400 and response.json["error"] == "invalid_request"


def test_redirect_uri_must_match_at_token(browser: Browser) -> None:
    code = browser.full_login()
    response = browser.exchange(code, redirect_uri=REDIRECT + "/")
    assert response.json["error"] == "invalid_grant"


def test_code_reuse_fails_and_revokes_tokens(browser: Browser) -> None:
    code = browser.full_login()
    first = browser.exchange(code)
    assert first.status_code == 200
    access = first.json["access_token"]
    ok = browser.client.get("/oauth/userinfo", headers={"Authorization": f"Bearer {access}"})
    assert ok.status_code == 200
    second = browser.exchange(code)
    assert second.status_code == 400 and second.json["error"] == "invalid_grant"
    revoked = browser.client.get("/oauth/userinfo", headers={"Authorization": f"Bearer {access}"})
    assert revoked.status_code == 401
    refresh = browser.client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": first.json["refresh_token"]},
        headers=basic(),
    )
    assert refresh.json["error"] == "invalid_grant"


def test_code_of_another_client_fails(browser: Browser, public_browser: Browser) -> None:
    code = public_browser.full_login()
    response = browser.exchange(code, redirect_uri=public_browser.redirect_uri)
    assert response.json["error"] == "invalid_grant"


def test_wrong_client_secret(browser: Browser) -> None:
    code = browser.full_login()
    response = browser.client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": browser.verifier,
        },
        headers=basic(secret=CONF_SECRET + "x"),
    )
    assert response.status_code == 401 and response.json["error"] == "invalid_client"


def test_confidential_client_cannot_skip_authentication(browser: Browser) -> None:
    code = browser.full_login()
    response = browser.client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": browser.verifier,
            "client_id": "conf",
        },
    )
    assert response.json["error"] == "invalid_client"


def test_expired_code(browser: Browser, provider: OIDCProvider) -> None:
    code = browser.full_login()
    real = provider.clock
    provider.clock = lambda: real() + provider.code_ttl
    try:
        assert browser.exchange(code).json["error"] == "invalid_grant"
    finally:
        provider.clock = real


def test_refresh_rotation_and_reuse_revokes_family(browser: Browser) -> None:
    tokens = browser.exchange(browser.full_login()).json
    first_refresh = tokens["refresh_token"]

    def refresh(token: str) -> object:
        return browser.client.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": token},
            headers=basic(),
        )

    rotated = refresh(first_refresh)
    assert rotated.status_code == 200  # type: ignore[attr-defined]
    new = rotated.json  # type: ignore[attr-defined]
    assert new["refresh_token"] != first_refresh
    assert new["scope"] == "openid profile email"
    refreshed_id = jwt.decode(new["id_token"], options={"verify_signature": False})
    first_id = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    for claim in ("iss", "sub", "aud", "auth_time", "acr", "amr", "device_id"):
        assert refreshed_id[claim] == first_id[claim]
    assert "nonce" not in refreshed_id
    ok = browser.client.get(
        "/oauth/userinfo", headers={"Authorization": f"Bearer {new['access_token']}"}
    )
    assert ok.status_code == 200
    replay = refresh(first_refresh)  # the old one comes back: stolen
    assert replay.json["error"] == "invalid_grant"  # type: ignore[attr-defined]
    assert refresh(new["refresh_token"]).json["error"] == "invalid_grant"  # type: ignore[attr-defined]
    gone = browser.client.get(
        "/oauth/userinfo", headers={"Authorization": f"Bearer {new['access_token']}"}
    )
    assert gone.status_code == 401


def test_refresh_cannot_widen_scope(browser: Browser) -> None:
    browser.scope = "openid email"
    tokens = browser.exchange(browser.full_login()).json
    response = browser.client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "scope": "openid email profile",
        },
        headers=basic(),
    )
    assert response.json["error"] == "invalid_scope"


def test_unsupported_grant_types(browser: Browser) -> None:
    for grant in ("password", "client_credentials", "implicit"):
        response = browser.client.post("/oauth/token", data={"grant_type": grant}, headers=basic())
        assert response.json["error"] == "unsupported_grant_type"


# ---- forged tokens at userinfo and introspection ----------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(access_token: str, alg: str, key: bytes | None) -> str:
    head, body, _ = access_token.split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=="))
    header["alg"] = alg
    signing_input = _b64(json.dumps(header).encode()) + "." + body
    sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest() if key else b""
    return signing_input + "." + _b64(sig)


@pytest.fixture
def tokens(browser: Browser) -> dict[str, str]:
    response = browser.exchange(browser.full_login())
    assert response.status_code == 200
    return response.json  # type: ignore[no-any-return]


@pytest.fixture
def forged(tokens: dict[str, str], provider: OIDCProvider) -> list[str]:
    pem = provider.keys.active().public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    access = tokens["access_token"]
    return [
        _forge(access, "none", None),
        _forge(access, "HS256", pem),
        access.rsplit(".", 1)[0] + ".",
        tokens["id_token"],  # an ID token is not an access token
    ]


def test_forged_tokens_at_userinfo(browser: Browser, forged: list[str]) -> None:
    for token in forged:
        response = browser.client.get(
            "/oauth/userinfo", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_userinfo_needs_a_bearer(browser: Browser) -> None:
    assert browser.client.get("/oauth/userinfo").status_code == 401
    basic_auth = browser.client.get("/oauth/userinfo", headers=basic())
    assert basic_auth.status_code == 401


def test_forged_tokens_at_introspection(
    browser: Browser, tokens: dict[str, str], forged: list[str]
) -> None:
    for token in forged:
        response = browser.client.post("/oauth/introspect", data={"token": token}, headers=basic())
        assert response.status_code == 200 and response.json == {"active": False}
    real = browser.client.post(
        "/oauth/introspect", data={"token": tokens["access_token"]}, headers=basic()
    )
    assert real.json["active"] is True and real.json["sub"] == "u-alice"
    assert real.json["client_id"] == "conf" and real.json["device_id"] == "dev-1"
    refresh = browser.client.post(
        "/oauth/introspect",
        data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
        headers=basic(),
    )
    assert refresh.json["active"] is True and refresh.json["token_type"] == "refresh_token"


def test_introspection_needs_client_auth(browser: Browser, tokens: dict[str, str]) -> None:
    anonymous = browser.client.post("/oauth/introspect", data={"token": tokens["access_token"]})
    assert anonymous.status_code in (400, 401) and anonymous.json["error"] == "invalid_client"
    public = browser.client.post(
        "/oauth/introspect", data={"token": tokens["access_token"], "client_id": "pub"}
    )
    assert public.json["error"] == "invalid_client"


def test_revocation(browser: Browser, tokens: dict[str, str]) -> None:
    response = browser.client.post(
        "/oauth/revoke",
        data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
        headers=basic(),
    )
    assert response.status_code == 200
    for token in (tokens["access_token"], tokens["refresh_token"]):
        state = browser.client.post("/oauth/introspect", data={"token": token}, headers=basic())
        assert state.json == {"active": False}
    unknown = browser.client.post("/oauth/revoke", data={"token": "nope"}, headers=basic())
    assert unknown.status_code == 200  # RFC 7009: unknown tokens are not an error


def test_revocation_by_another_client_is_refused(browser: Browser, tokens: dict[str, str]) -> None:
    response = browser.client.post(
        "/oauth/revoke", data={"token": tokens["access_token"], "client_id": "pub"}
    )
    assert response.status_code == 400
    info = browser.client.get(
        "/oauth/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert info.status_code == 200


# ---- end session --------------------------------------------------------------------------


def test_end_session_redirects_only_to_registered_uri(
    browser: Browser, tokens: dict[str, str]
) -> None:
    ok = browser.client.get(
        "/oauth/end_session?"
        + urlencode(
            {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": LOGOUT, "state": "s1"}
        )
    )
    assert ok.status_code == 303 and ok.headers["Location"] == LOGOUT + "?state=s1"
    by_client = browser.client.get(
        "/oauth/end_session?" + urlencode({"client_id": "conf", "post_logout_redirect_uri": LOGOUT})
    )
    assert by_client.status_code == 303 and by_client.headers["Location"] == LOGOUT


@pytest.mark.parametrize(
    "params",
    [
        {"post_logout_redirect_uri": "https://evil.example/"},  # no client at all
        {"client_id": "conf", "post_logout_redirect_uri": "https://evil.example/"},
        {"client_id": "conf", "post_logout_redirect_uri": LOGOUT + "/"},
        {"client_id": "conf", "post_logout_redirect_uri": REDIRECT},  # a login redirect, not logout
        {"client_id": "nope", "post_logout_redirect_uri": LOGOUT},
        {"client_id": "pub", "post_logout_redirect_uri": LOGOUT},  # another client's URI
        {"id_token_hint": "garbage", "post_logout_redirect_uri": LOGOUT},
    ],
)
def test_end_session_open_redirect_refused(browser: Browser, params: dict[str, str]) -> None:
    response = browser.client.get("/oauth/end_session?" + urlencode(params))
    assert response.status_code == 400 and "Location" not in response.headers


def test_end_session_hint_client_mismatch(browser: Browser, tokens: dict[str, str]) -> None:
    response = browser.client.get(
        "/oauth/end_session?"
        + urlencode(
            {
                "id_token_hint": tokens["id_token"],
                "client_id": "pub",
                "post_logout_redirect_uri": LOGOUT,
            }
        )
    )
    assert response.status_code == 400 and "Location" not in response.headers


def test_end_session_without_target_shows_page(browser: Browser) -> None:
    response = browser.client.get("/oauth/end_session")
    assert response.status_code == 200 and "signed out" in response.get_data(as_text=True)


def test_gate_not_called_for_refused_requests(browser: Browser, gate: StubGate) -> None:
    browser.authorize(redirect_uri="https://evil.example/cb")
    assert gate.calls == []
