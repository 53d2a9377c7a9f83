"""A test device: a P-256 key, its CSR, and the proofs it signs.

Used by the enrollment, proof, check-in and login tests and by the agent tests::

    key = DeviceKey.generate()
    csr = key.csr_pem()                                   # for POST /mdm/v1/enroll
    proof = key.request_proof(device_id, "POST", url, body)   # Device-Proof header
    login = key.login_proof(device_id, audience=aud, nonce=nonce, posture={...})

Every claim and header can be overridden (``claims=`` / ``header=``, ``None`` removes one),
so attack tests build bad proofs with the same helper. ``sign_raw`` signs arbitrary
header/claims with this key; ``hs256_with_public_key`` forges the classic algorithm-confusion
token; ``unsigned`` makes an ``alg: none`` token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["DeviceKey", "body_hash", "new_jti", "b64url"]

REQUEST_TYP = "device-proof+jwt"
LOGIN_TYP = "device-login+jwt"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def body_hash(body: bytes) -> str:
    """The ``bh`` claim: base64url (no padding) SHA-256 of the exact body bytes."""
    return b64url(hashlib.sha256(body).digest())


def new_jti() -> str:
    """16 random bytes, base64url (22 characters)."""
    return b64url(secrets.token_bytes(16))


def _apply(base: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    merged = dict(base)
    for key, value in (overrides or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


@dataclass
class DeviceKey:
    """A device's P-256 private key and what it signs."""

    private_key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> DeviceKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @property
    def public_key_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def csr_pem(self, common_name: str = "device") -> str:
        """A PEM CSR signed by this key (the CA ignores the subject; it proves possession)."""
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .sign(self.private_key, hashes.SHA256())
        )
        return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def sign_raw(self, header: dict[str, Any], claims: dict[str, Any]) -> str:
        """ES256-sign ``claims`` with exactly ``header`` (pyjwt adds only ``alg``)."""
        extra = {k: v for k, v in header.items() if k != "alg"}
        return jwt.encode(claims, self.private_key, algorithm="ES256", headers=extra)

    def request_proof(
        self,
        device_id: str,
        method: str,
        url: str,
        body: bytes = b"",
        *,
        iat: int | None = None,
        jti: str | None = None,
        claims: dict[str, Any] | None = None,
        header: dict[str, Any] | None = None,
    ) -> str:
        """A request proof (``typ: device-proof+jwt``) for ``method url`` over ``body``."""
        base_claims = {
            "htm": method.upper(),
            "htu": url.split("?", 1)[0].split("#", 1)[0],
            "iat": int(time.time()) if iat is None else iat,
            "jti": jti or new_jti(),
            "bh": body_hash(body),
        }
        base_header = {"typ": REQUEST_TYP, "kid": device_id}
        return self.sign_raw(_apply(base_header, header), _apply(base_claims, claims))

    def login_proof(
        self,
        device_id: str,
        *,
        audience: str,
        nonce: str,
        posture: dict[str, Any] | None = None,
        iat: int | None = None,
        jti: str | None = None,
        claims: dict[str, Any] | None = None,
        header: dict[str, Any] | None = None,
    ) -> str:
        """A login proof (``typ: device-login+jwt``) over ``audience`` and ``nonce``."""
        base_claims: dict[str, Any] = {
            "aud": audience,
            "nonce": nonce,
            "iat": int(time.time()) if iat is None else iat,
            "jti": jti or new_jti(),
        }
        if posture is not None:
            base_claims["posture"] = posture
        base_header = {"typ": LOGIN_TYP, "kid": device_id}
        return self.sign_raw(_apply(base_header, header), _apply(base_claims, claims))


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """An ``alg: none`` token (empty signature)."""
    h = b64url(json.dumps({**header, "alg": "none"}).encode())
    c = b64url(json.dumps(claims).encode())
    return f"{h}.{c}."


def hs256_with_public_key(key: DeviceKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """The algorithm-confusion forgery: HS256 keyed with the device's public key PEM."""
    h = b64url(json.dumps({**header, "alg": "HS256"}).encode())
    c = b64url(json.dumps(claims).encode())
    mac = hmac.new(key.public_key_pem, f"{h}.{c}".encode(), hashlib.sha256).digest()
    return f"{h}.{c}.{b64url(mac)}"


__all__ += ["unsigned", "hs256_with_public_key"]
