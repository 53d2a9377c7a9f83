"""verify_upstream_id_token: OIDC Core 3.1.3.7 checks, one forged token per rule."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from idp_connectors.errors import (
    BadSignature,
    DisallowedAlgorithm,
    Expired,
    MalformedToken,
    NonceMismatch,
    UnknownKey,
    WrongAudience,
    WrongIssuer,
)
from idp_connectors.jwks import JwksCache
from idp_connectors.oidc_upstream import (
    OidcUpstream,
    UpstreamOidcSettings,
    verify_upstream_id_token,
)
from tests.helpers.json_server import JsonServer

ISSUER = "https://idp.example"
CLIENT = "gateway"
NONCE = "n-0123456789"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def keys(json_server: JsonServer, http: httpx.Client) -> JwksCache:
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
    ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(EC_KEY.public_key()))
    json_server.routes["/jwks"] = (
        200,
        {"keys": [{**rsa_jwk, "kid": "r1"}, {**ec_jwk, "kid": "e1"}]},
    )
    return JwksCache(http, json_server.url("/jwks"))


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": CLIENT,
        "iat": now,
        "exp": now + 300,
        "nonce": NONCE,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], *, key: Any = KEY, alg: str = "RS256", kid: str = "r1") -> str:
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def verify(token: str, keys: JwksCache, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "issuer": ISSUER,
        "client_id": CLIENT,
        "nonce": NONCE,
        "algorithms": ("RS256", "ES256"),
        "leeway": timedelta(seconds=5),
        "max_age": timedelta(minutes=10),
        "now": time.time(),
    }
    args.update(kw)
    return verify_upstream_id_token(token, keys, **args)


def test_valid(keys: JwksCache) -> None:
    assert verify(sign(claims()), keys)["sub"] == "alice"
    assert verify(sign(claims(), key=EC_KEY, alg="ES256", kid="e1"), keys)["sub"] == "alice"


def test_audience_list_with_azp(keys: JwksCache) -> None:
    assert verify(sign(claims(aud=[CLIENT, "other"], azp=CLIENT)), keys)


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: claims(iss="https://evil.example"), WrongIssuer),
        (lambda: claims(aud="someone-else"), WrongAudience),
        (lambda: claims(aud=[CLIENT, "other"]), WrongAudience),  # several audiences, no azp
        (lambda: claims(azp="someone-else"), WrongAudience),
        (lambda: claims(nonce="replayed-nonce"), NonceMismatch),
        (lambda: claims(nonce=7), NonceMismatch),
        (lambda: claims(exp=int(time.time()) - 60), Expired),
        (
            lambda: claims(iat=int(time.time()) - 3600, exp=int(time.time()) + 60),
            Expired,
        ),  # too old
        (lambda: claims(iat=int(time.time()) + 3600), Expired),  # from the future
        (lambda: claims(sub=""), MalformedToken),
        (lambda: claims(sub=None), MalformedToken),
        (lambda: claims(nonce=None), MalformedToken),
        (lambda: claims(exp=None), MalformedToken),
    ],
)
def test_refused(
    keys: JwksCache, make: Callable[[], dict[str, Any]], error: type[Exception]
) -> None:
    # The claims are made when the test runs, not at collection: a long suite must not turn
    # "valid but for one claim" into "expired".
    with pytest.raises(error):
        verify(sign(make()), keys)


def test_bad_signature(keys: JwksCache) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(BadSignature):
        verify(sign(claims(), key=other), keys)


def test_unknown_kid(keys: JwksCache) -> None:
    with pytest.raises(UnknownKey):
        verify(sign(claims(), kid="nope"), keys)


def test_alg_none(keys: JwksCache) -> None:
    header = b64(json.dumps({"alg": "none", "kid": "r1"}).encode())
    with pytest.raises(DisallowedAlgorithm):
        verify(f"{header}.{b64(json.dumps(claims()).encode())}.", keys)


def test_hs256_with_the_public_key(keys: JwksCache) -> None:
    secret = KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64(json.dumps({"alg": "HS256", "kid": "r1"}).encode())
    body = b64(json.dumps(claims()).encode())
    signature = b64(hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest())
    with pytest.raises(DisallowedAlgorithm):
        verify(f"{header}.{body}.{signature}", keys)


def test_algorithm_outside_the_configured_list(keys: JwksCache) -> None:
    with pytest.raises(DisallowedAlgorithm):
        verify(sign(claims(), key=EC_KEY, alg="ES256", kid="e1"), keys, algorithms=("RS256",))


def test_upstream_refuses_symmetric_configuration(http: httpx.Client) -> None:
    settings = UpstreamOidcSettings(
        name="corp", issuer=ISSUER, client_id=CLIENT, algorithms=("HS256",)
    )
    with pytest.raises(ValueError, match="asymmetric"):
        OidcUpstream(settings, redirect_uri="https://gw.example/cb", http=http)
