"""Token issuance and verification, including algorithm-confusion attacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from posture_gateway.oidc.tokens import TokenIssuer, TokenRejected, half_hash
from posture_gateway.signing.key_ring import KeyRing

ISS = "https://gw.example"


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    ring = KeyRing.open(tmp_path_factory.mktemp("keys"), passphrase=None, dev_mode=True)
    ring.rotate("ES256", overlap=timedelta(hours=1))
    return ring


@pytest.fixture
def issuer(ring: KeyRing) -> TokenIssuer:
    return TokenIssuer(
        ring, issuer=ISS, id_token_ttl=timedelta(minutes=5), access_token_ttl=timedelta(minutes=5)
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_id_token_claims(issuer: TokenIssuer, ring: KeyRing) -> None:
    token = issuer.id_token(
        subject="u1",
        audience="app",
        nonce="n-1",
        auth_time=1700000000,
        acr="urn:x",
        amr=["pwd", "hwk"],
        extra_claims={"device_id": "d1"},
        access_token="at",
    )
    key = ring.active("RS256")
    claims = jwt.decode(token, key.public_key, algorithms=["RS256"], audience="app", issuer=ISS)
    assert claims["sub"] == "u1" and claims["nonce"] == "n-1" and claims["amr"] == ["pwd", "hwk"]
    assert claims["device_id"] == "d1" and claims["at_hash"] == half_hash("at", "RS256")
    assert claims["exp"] - claims["iat"] == 300
    assert issuer.verify_id_token(token, audience="app")["sub"] == "u1"


def test_id_token_es256(issuer: TokenIssuer) -> None:
    token = issuer.id_token(
        subject="u1", audience="app", nonce=None, auth_time=1, acr=None, amr=[], alg="ES256"
    )
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    assert "nonce" not in issuer.verify_id_token(token, audience="app")


def test_extra_claims_cannot_override_reserved(issuer: TokenIssuer) -> None:
    with pytest.raises(ValueError, match="reserved"):
        issuer.id_token(
            subject="u1",
            audience="a",
            nonce=None,
            auth_time=1,
            acr=None,
            amr=[],
            extra_claims={"sub": "admin"},
        )


def test_access_token_roundtrip(issuer: TokenIssuer) -> None:
    issued = issuer.access_token(subject="u1", client_id="app", scope="openid email")
    claims = issuer.verify_access_token(issued.token)
    assert claims["jti"] == issued.jti and claims["scope"] == "openid email"


def test_id_token_is_not_an_access_token(issuer: TokenIssuer) -> None:
    token = issuer.id_token(subject="u", audience="app", nonce=None, auth_time=1, acr=None, amr=[])
    with pytest.raises(TokenRejected) as err:
        issuer.verify_access_token(token)
    assert err.value.reason == "wrong_type"


def _forge(header: dict[str, object], claims: dict[str, object], sign: bytes | None) -> str:
    signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    sig = b"" if sign is None else hmac.new(sign, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(sig)


def _claims(issuer: TokenIssuer) -> dict[str, object]:
    return jwt.decode(
        issuer.access_token(subject="u1", client_id="app", scope="openid").token,
        options={"verify_signature": False},
    )


def test_alg_none_is_refused(issuer: TokenIssuer, ring: KeyRing) -> None:
    header = {"alg": "none", "typ": "at+jwt", "kid": ring.active().kid}
    with pytest.raises(TokenRejected) as err:
        issuer.verify_access_token(_forge(header, _claims(issuer), None))
    assert err.value.reason in {"malformed", "bad_signature"}


def test_hs256_with_public_key_is_refused(issuer: TokenIssuer, ring: KeyRing) -> None:
    pem = ring.active().public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "at+jwt", "kid": ring.active().kid}
    with pytest.raises(TokenRejected) as err:
        issuer.verify_access_token(_forge(header, _claims(issuer), pem))
    assert err.value.reason == "malformed"


def test_unknown_kid_wrong_issuer_tampered(issuer: TokenIssuer, ring: KeyRing) -> None:
    token = issuer.access_token(subject="u1", client_id="app", scope="openid").token
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["sub"] = "admin"
    with pytest.raises(TokenRejected) as err:
        issuer.verify_access_token(f"{head}.{_b64(json.dumps(claims).encode())}.{sig}")
    assert err.value.reason == "bad_signature"
    other = TokenIssuer(
        ring,
        issuer="https://evil",
        id_token_ttl=timedelta(minutes=5),
        access_token_ttl=timedelta(minutes=5),
    )
    with pytest.raises(TokenRejected) as err:
        issuer.verify_access_token(
            other.access_token(subject="u", client_id="app", scope="openid").token
        )
    assert err.value.reason in {"wrong_audience", "wrong_issuer"}
    with pytest.raises(TokenRejected) as err:
        issuer.verify_access_token("not.a.jwt")
    assert err.value.reason == "malformed"


def test_expired_access_token(issuer: TokenIssuer) -> None:
    issued = issuer.access_token(
        subject="u1", client_id="app", scope="openid", ttl=timedelta(seconds=-60)
    )
    with pytest.raises(TokenRejected) as err:
        issuer.verify_access_token(issued.token)
    assert err.value.reason == "expired"


def test_half_hash_known_vector() -> None:
    # OpenID Connect Core examples use SHA-256 left half, base64url.
    digest = hashlib.sha256(b"jHkWEdUXMU1BwAsC4vtUsZwnNmjAn1NmVBo2Bjl_4Bk").digest()
    assert half_hash("jHkWEdUXMU1BwAsC4vtUsZwnNmjAn1NmVBo2Bjl_4Bk", "RS256") == _b64(digest[:16])


def test_needs_key_ring(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        TokenIssuer(None, issuer=ISS, id_token_ttl=timedelta(1), access_token_ttl=timedelta(1))  # type: ignore[arg-type]
