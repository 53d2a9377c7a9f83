"""The device key on the agent side: P-256 generation, 0600 storage, CSR, and proof signing.

Signs the two JWTs a device presents (the contract the server's ``mdm_core.device.proof``
verifies):

- request proofs, header ``Device-Proof: <jwt>`` on every device request after
  enrollment (RFC 9449 DPoP style): header ``{"alg": "ES256", "typ": "device-proof+jwt",
  "kid": device_id}``, claims ``htm``, ``htu`` (``scheme://host[:port]/path``, no query),
  ``iat``, ``jti`` (16 random bytes, base64url) and ``bh`` (base64url-no-pad SHA-256 of the
  exact body bytes);
- login proofs for the gateway: ``typ`` ``device-login+jwt``, claims ``aud``, ``nonce``,
  ``iat``, ``jti`` and, optionally, ``posture`` (a fresh report: ``{"format", "report"}``).

The private key file is created with mode 0600 (never wider) and refused when group or
others can read it, like ssh does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import stat
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = [
    "DeviceKey",
    "KeyFileError",
    "REQUEST_PROOF_TYP",
    "LOGIN_PROOF_TYP",
    "body_hash",
    "htu_of",
]

REQUEST_PROOF_TYP = "device-proof+jwt"
LOGIN_PROOF_TYP = "device-login+jwt"


class KeyFileError(Exception):
    """The key file is unreadable, not a P-256 key, or readable by group/others."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def body_hash(body: bytes) -> str:
    """``bh``: base64url (no padding) of SHA-256 over the exact body bytes."""
    return b64url(hashlib.sha256(body).digest())


def htu_of(url: str) -> str:
    """``htu``: ``scheme://host[:port]/path`` of ``url`` (query and fragment dropped)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path or '/'}"


class DeviceKey:
    """A device's P-256 private key, loaded once and used as a key object."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise KeyFileError("device keys are P-256")
        self.private_key = private_key

    @classmethod
    def generate(cls) -> DeviceKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def load_or_create(cls, path: Path) -> DeviceKey:
        """Load the key at ``path`` or create it there (mode 0600, atomically)."""
        if path.exists():
            return cls.load(path)
        key = cls.generate()
        pem = key.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(path.name + f".{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        return key

    @classmethod
    def load(cls, path: Path) -> DeviceKey:
        try:
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise KeyFileError(f"{path}: key file is accessible by group/others; chmod 600")
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot read key file: {exc.strerror}") from exc
        except ValueError as exc:
            raise KeyFileError(f"{path}: not a PEM private key") from exc
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise KeyFileError(f"{path}: not an EC key")
        return cls(loaded)

    # --- public material --------------------------------------------------------------------

    def public_jwk(self) -> dict[str, str]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big")),
        }

    def thumbprint(self) -> str:
        """RFC 7638 JWK thumbprint (SHA-256, base64url)."""
        jwk = self.public_jwk()
        members = {k: jwk[k] for k in ("crv", "kty", "x", "y")}  # required members, sorted
        canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
        return b64url(hashlib.sha256(canonical.encode("ascii")).digest())

    def csr_pem(self, common_name: str = "posture-device") -> str:
        """A PKCS#10 request signed by this key (proof of possession at enrollment)."""
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .sign(self.private_key, hashes.SHA256())
        )
        return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")

    # --- proofs -----------------------------------------------------------------------------

    def request_proof(
        self,
        device_id: str,
        method: str,
        url: str,
        body: bytes = b"",
        *,
        iat: int | None = None,
        jti: str | None = None,
    ) -> str:
        claims = {
            "htm": method.upper(),
            "htu": htu_of(url),
            "iat": int(time.time()) if iat is None else iat,
            "jti": jti or b64url(secrets.token_bytes(16)),
            "bh": body_hash(body),
        }
        return self._sign(claims, REQUEST_PROOF_TYP, device_id)

    def login_proof(
        self,
        device_id: str,
        aud: str,
        nonce: str,
        *,
        posture: dict[str, Any] | None = None,
        iat: int | None = None,
    ) -> str:
        claims: dict[str, Any] = {
            "aud": aud,
            "nonce": nonce,
            "iat": int(time.time()) if iat is None else iat,
            "jti": b64url(secrets.token_bytes(16)),
        }
        if posture is not None:
            claims["posture"] = posture
        return self._sign(claims, LOGIN_PROOF_TYP, device_id)

    def _sign(self, claims: dict[str, Any], typ: str, device_id: str) -> str:
        return jwt.encode(
            claims,
            self.private_key,
            algorithm="ES256",
            headers={"typ": typ, "kid": device_id},
        )
