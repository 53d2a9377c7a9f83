"""Password and client-secret hashing: scrypt (hashlib, RFC 7914) and SHA-256 for secrets.

- User passwords: ``scrypt$n=<N>,r=<r>,p=<p>$<salt b64>$<hash b64>``. scrypt is in the
  standard library (no native dependency to ship); parameters are stored with the hash so they
  can be raised later without invalidating existing hashes (see docs/decisions.md).
- Client secrets are generated, high-entropy (>= 32 characters): ``sha256$<hex>`` is enough
  and keeps the token endpoint fast. ``scrypt$`` hashes are also accepted for client secrets.

Verification is constant-time in the hash comparison, and :func:`verify_password` against
:func:`dummy_hash` lets callers spend the same time for unknown users.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

__all__ = [
    "hash_password",
    "verify_password",
    "hash_client_secret",
    "verify_client_secret",
    "generate_client_secret",
    "dummy_hash",
    "MIN_CLIENT_SECRET_LENGTH",
]

_N, _R, _P = 2**15, 8, 1
_MAXMEM = 128 * 1024 * 1024
_DKLEN = 32
MIN_CLIENT_SECRET_LENGTH = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, n: int = _N, r: int = _R, p: int = _P) -> str:
    """A salted scrypt hash of ``password`` in our self-describing format."""
    if not password:
        raise ValueError("empty password")
    salt = secrets.token_bytes(16)
    derived = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=_DKLEN
    )
    return f"scrypt$n={n},r={r},p={p}${_b64(salt)}${_b64(derived)}"


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches ``encoded``; False for any malformed hash."""
    try:
        scheme, params, salt_b64, hash_b64 = encoded.split("$")
        if scheme != "scrypt":
            return False
        values = dict(item.split("=") for item in params.split(","))
        n, r, p = int(values["n"]), int(values["r"]), int(values["p"])
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(hash_b64, validate=True)
        derived = hashlib.scrypt(
            password.encode("utf-8"),
            salt=salt,
            n=n,
            r=r,
            p=p,
            maxmem=_MAXMEM,
            dklen=len(expected),
        )
    except (ValueError, KeyError):
        return False
    return hmac.compare_digest(derived, expected)


@functools.cache
def dummy_hash() -> str:
    """A valid hash of a random password: verifying against it costs what a real check costs."""
    return hash_password(secrets.token_urlsafe(16))


def generate_client_secret() -> str:
    """A new client secret (43 URL-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def hash_client_secret(secret: str) -> str:
    """``sha256$<hex>`` of a generated, high-entropy client secret."""
    if len(secret) < MIN_CLIENT_SECRET_LENGTH:
        raise ValueError(f"client secrets must have at least {MIN_CLIENT_SECRET_LENGTH} characters")
    return "sha256$" + hashlib.sha256(secret.encode("utf-8")).hexdigest()


def verify_client_secret(secret: str, encoded: str) -> bool:
    """Constant-time check of a client secret against ``sha256$`` or ``scrypt$`` hashes."""
    if encoded.startswith("sha256$"):
        actual = hashlib.sha256(secret.encode("utf-8")).hexdigest()
        return hmac.compare_digest(actual, encoded[len("sha256$") :])
    if encoded.startswith("scrypt$"):
        return verify_password(secret, encoded)
    return False
