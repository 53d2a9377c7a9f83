"""``posture try-login``'s own checks (issue 8): the loopback redirect URI it listens on,
PKCE S256, and the ID token verification an attacker would try to get past (an algorithm
the provider never announced, the HS256-with-the-public-key confusion, a foreign nonce,
audience or issuer). The whole flow runs in tests/e2e/test_try_login.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import click
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from posture_gateway.cli import try_login as cli_try_login
from posture_gateway.cli.base import RuntimeProblem
from posture_gateway.cli.try_login import parse_loopback_redirect, pkce_pair

__all__: list[str] = []

ISSUER = "https://gw.example"
CLIENT = "example-app"
NONCE = "nonce-sent"


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:8080/callback",
        "http://localhost:9000/cb",
        "http://[::1]:8080/callback",
        "http://127.0.0.2:1234/",
    ],
)
def test_a_loopback_http_redirect_uri_with_a_port_is_accepted(uri: str) -> None:
    parsed = parse_loopback_redirect(uri)
    assert parsed.port > 0 and parsed.uri == uri


@pytest.mark.parametrize(
    "uri",
    [
        "https://127.0.0.1:8080/callback",  # we cannot serve TLS
        "http://app.example:8080/callback",  # not this machine
        "http://0.0.0.0:8080/callback",  # every interface
        "http://127.0.0.1/callback",  # no port to listen on
        "http://127.0.0.1:8080/callback?x=1",
        "http://user@127.0.0.1:8080/callback",
    ],
)
def test_any_other_redirect_uri_is_refused(uri: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_loopback_redirect(uri)


def test_pkce_is_s256_of_a_fresh_verifier() -> None:
    verifier, challenge = pkce_pair()
    assert 43 <= len(verifier) <= 128
    digest = hashlib.sha256(verifier.encode()).digest()
    assert challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert pkce_pair()[0] != verifier


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, dict[str, Any]]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "use": "sig", "alg": "ES256"})
    monkeypatch.setattr(cli_try_login, "_get_json", lambda url, what: {"keys": [jwk]})
    doc = {
        "issuer": ISSUER,
        "jwks_uri": ISSUER + "/jwks.json",
        "id_token_signing_alg_values_supported": ["ES256"],
    }
    return key, doc


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": CLIENT, "sub": "u-alice", "iat": now, "exp": now + 300}
    claims["nonce"] = NONCE
    claims.update(overrides)
    return claims


def _verify(doc: dict[str, Any], token: str) -> dict[str, Any]:
    return cli_try_login._verify_id_token(doc, token, client_id=CLIENT, nonce=NONCE)


def test_a_token_signed_with_the_announced_key_is_verified(provider: Any) -> None:
    key, doc = provider
    token = jwt.encode(_claims(), key, algorithm="ES256", headers={"kid": "k1"})
    assert _verify(doc, token)["sub"] == "u-alice"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"nonce": "another-login"}, "nonce"),
        ({"aud": "other-app"}, "audience"),
        ({"iss": "https://evil.example"}, "issuer"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"azp": "other-app"}, "azp"),
    ],
)
def test_a_token_for_another_login_client_or_issuer_is_refused(
    provider: Any, overrides: dict[str, Any], reason: str
) -> None:
    key, doc = provider
    token = jwt.encode(_claims(**overrides), key, algorithm="ES256", headers={"kid": "k1"})
    with pytest.raises(RuntimeProblem) as refused:
        _verify(doc, token)
    assert reason in str(refused.value.message).lower()


def test_the_token_header_cannot_choose_an_unannounced_algorithm(provider: Any) -> None:
    key, doc = provider
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # The classic confusion: HMAC keyed with the public key the JWKS publishes.
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","kid":"k1"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(_claims()).encode()).rstrip(b"=")
    signature = hmac.new(public_pem, header + b"." + body, hashlib.sha256).digest()
    forged = b".".join([header, body, base64.urlsafe_b64encode(signature).rstrip(b"=")])
    with pytest.raises(RuntimeProblem, match="not announced"):
        _verify(doc, forged.decode())
    unsigned = jwt.encode(_claims(), None, algorithm="none", headers={"kid": "k1"})
    with pytest.raises(RuntimeProblem, match="not announced"):
        _verify(doc, unsigned)


def test_a_provider_announcing_only_symmetric_or_none_algorithms_is_refused(
    provider: Any,
) -> None:
    key, doc = provider
    doc["id_token_signing_alg_values_supported"] = ["none", "HS256"]
    token = jwt.encode(_claims(), key, algorithm="ES256", headers={"kid": "k1"})
    with pytest.raises(RuntimeProblem, match="no asymmetric"):
        _verify(doc, token)
