"""OidcUpstream begin/complete: discovery checks, callback checks, token endpoint failures.

The full happy path runs against the real npm oidc-provider in tests/peers; here a local JSON
server plays a misbehaving upstream.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from idp_connectors.errors import (
    LoginStateError,
    UpstreamDenied,
    UpstreamProtocolError,
    UpstreamUnavailable,
)
from idp_connectors.oidc_upstream import OidcUpstream, PendingUpstreamLogin, UpstreamOidcSettings
from tests.helpers.json_server import JsonServer

DISCOVERY = "/.well-known/openid-configuration"


def metadata(server: JsonServer, **overrides: Any) -> dict[str, Any]:
    doc = {
        "issuer": server.base_url,
        "authorization_endpoint": server.url("/auth"),
        "token_endpoint": server.url("/token"),
        "jwks_uri": server.url("/jwks"),
        "userinfo_endpoint": server.url("/me"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }
    doc.update(overrides)
    return doc


@pytest.fixture
def upstream(json_server: JsonServer, http: httpx.Client) -> OidcUpstream:
    json_server.routes[DISCOVERY] = (200, metadata(json_server))
    settings = UpstreamOidcSettings(
        name="corp", issuer=json_server.base_url, client_id="gw", client_secret="s" * 32
    )
    return OidcUpstream(settings, redirect_uri="https://gw.example/cb", http=http)


def test_begin_builds_a_pkce_request(upstream: OidcUpstream, json_server: JsonServer) -> None:
    url, pending = upstream.begin()
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(json_server.url("/auth?"))
    assert query["state"] == [pending.state]
    assert query["nonce"] == [pending.nonce]
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == ["https://gw.example/cb"]
    assert query["scope"] == ["openid email profile"]
    assert "code_verifier" not in query
    assert 43 <= len(pending.code_verifier) <= 128
    other_url, other = upstream.begin()
    assert other.state != pending.state and other.nonce != pending.nonce


def test_pending_round_trips_and_rejects_junk() -> None:
    pending = PendingUpstreamLogin("corp", "s", "n", "v" * 43, 1.0)
    assert PendingUpstreamLogin.from_dict(pending.to_dict()) == pending
    with pytest.raises(LoginStateError):
        PendingUpstreamLogin.from_dict({"upstream": "corp"})


def test_wrong_state(upstream: OidcUpstream) -> None:
    _, pending = upstream.begin()
    with pytest.raises(LoginStateError):
        upstream.complete(pending, {"state": "forged", "code": "c"})


def test_error_is_checked_after_state(upstream: OidcUpstream) -> None:
    _, pending = upstream.begin()
    with pytest.raises(LoginStateError):  # an injected error without our state is just forged
        upstream.complete(pending, {"state": "x", "error": "access_denied"})
    with pytest.raises(UpstreamDenied) as denied:
        upstream.complete(pending, {"state": pending.state, "error": "access_denied"})
    assert denied.value.error == "access_denied"


def test_too_slow(upstream: OidcUpstream) -> None:
    _, pending = upstream.begin()
    stale = PendingUpstreamLogin(
        pending.upstream, pending.state, pending.nonce, pending.code_verifier, 0.0
    )
    with pytest.raises(LoginStateError):
        upstream.complete(stale, {"state": pending.state, "code": "c"})


def test_callback_for_another_upstream(upstream: OidcUpstream) -> None:
    _, pending = upstream.begin()
    other = PendingUpstreamLogin(
        "other", pending.state, pending.nonce, pending.code_verifier, pending.started_at
    )
    with pytest.raises(LoginStateError):
        upstream.complete(other, {"state": pending.state, "code": "c"})


def test_rfc9207_iss_mismatch(upstream: OidcUpstream) -> None:
    _, pending = upstream.begin()
    with pytest.raises(LoginStateError):
        upstream.complete(pending, {"state": pending.state, "code": "c", "iss": "https://evil"})


def test_no_code(upstream: OidcUpstream) -> None:
    _, pending = upstream.begin()
    with pytest.raises(UpstreamProtocolError):
        upstream.complete(pending, {"state": pending.state})


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (500, {"error": "server_error"}, UpstreamUnavailable),
        (400, {"error": "invalid_grant"}, UpstreamDenied),
        (200, {"access_token": "a", "token_type": "Bearer"}, UpstreamProtocolError),  # no id_token
        (200, b"<html>not json</html>", UpstreamProtocolError),
    ],
)
def test_token_endpoint_failures(
    upstream: OidcUpstream, json_server: JsonServer, status: int, body: Any, error: type[Exception]
) -> None:
    json_server.routes["/token"] = (status, body)
    _, pending = upstream.begin()
    with pytest.raises(error):
        upstream.complete(pending, {"state": pending.state, "code": "the-code"})


def test_token_request_carries_the_verifier(
    upstream: OidcUpstream, json_server: JsonServer
) -> None:
    json_server.routes["/token"] = (400, {"error": "invalid_grant"})
    _, pending = upstream.begin()
    with pytest.raises(UpstreamDenied):
        upstream.complete(pending, {"state": pending.state, "code": "the-code"})
    sent = parse_qs(json_server.bodies["/token"].decode())
    assert sent["code_verifier"] == [pending.code_verifier]
    assert sent["grant_type"] == ["authorization_code"]
    assert sent["code"] == ["the-code"]
    assert "client_secret" not in sent  # client_secret_basic: in the Authorization header


@pytest.mark.parametrize(
    "overrides",
    [
        {"issuer": "https://someone-else.example"},
        {"issuer": None},
        {"jwks_uri": None},
        {"authorization_endpoint": None},
    ],
)
def test_bad_discovery(
    json_server: JsonServer, http: httpx.Client, overrides: dict[str, Any]
) -> None:
    doc = {k: v for k, v in metadata(json_server, **overrides).items() if v is not None}
    json_server.routes[DISCOVERY] = (200, doc)
    settings = UpstreamOidcSettings(name="corp", issuer=json_server.base_url, client_id="gw")
    upstream = OidcUpstream(settings, redirect_uri="https://gw.example/cb", http=http)
    with pytest.raises(UpstreamProtocolError):
        upstream.begin()


def test_discovery_down(json_server: JsonServer, http: httpx.Client) -> None:
    json_server.routes[DISCOVERY] = (503, {"error": "down"})
    settings = UpstreamOidcSettings(name="corp", issuer=json_server.base_url, client_id="gw")
    with pytest.raises(UpstreamUnavailable):
        OidcUpstream(settings, redirect_uri="https://gw.example/cb", http=http).begin()
