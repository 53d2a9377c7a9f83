"""Per-admin API tokens: made, parsed and checked here, stored only as a hash.

A token reads ``pga_<id>_<secret>``: ``id`` is 16 hex characters (64 random bits, public,
the row's lookup key), ``secret`` is 43 base64url characters (256 random bits). The store
keeps the id and the hex SHA-256 of the secret; a presented token is found by its id and its
secret's hash compared with :func:`hmac.compare_digest`. A fast hash is right here: the
secret is 256 random bits, not a password (nothing to brute-force).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

__all__ = [
    "PREFIX",
    "IssuedToken",
    "new_token",
    "looks_named",
    "parse_token",
    "hash_secret",
    "secret_matches",
]

PREFIX = "pga_"
_SHAPE = re.compile(r"^pga_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class IssuedToken:
    token_id: str
    secret_hash: str
    value: str  # shown ONCE to whoever made it; never stored, never logged

    def __repr__(self) -> str:  # no secret in tracebacks or logs
        return f"IssuedToken(token_id={self.token_id!r})"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def new_token() -> IssuedToken:
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)  # 32 bytes = 256 bits -> 43 characters
    return IssuedToken(token_id, hash_secret(secret), f"{PREFIX}{token_id}_{secret}")


def looks_named(presented: str) -> bool:
    """True when ``presented`` claims to be a per-admin token (prefix), well-formed or not."""
    return presented.startswith(PREFIX)


def parse_token(presented: str) -> tuple[str, str] | None:
    """``(token_id, secret)`` of a well-formed token, else ``None``."""
    match = _SHAPE.fullmatch(presented)
    return (match.group(1), match.group(2)) if match else None


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret).encode(), stored_hash.encode())
