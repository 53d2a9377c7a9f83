"""SCIM server configuration (``scim:`` in the gateway settings) and client authentication.

Each provisioning client (an Okta app, an Entra enterprise app) has an ``id`` and a bearer
token given either as its SHA-256 (``token_sha256``, hex) or as a file holding the token
(``token_file``, read once at start-up). Only digests are kept; a presented token is hashed
and compared with every client's digest in constant time (:func:`authenticate`), so neither
the answer nor its timing says which client a wrong token was close to.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "ScimClientSettings",
    "ScimSettings",
    "ClientDigests",
    "authenticate",
    "MIN_TOKEN_LENGTH",
]

#: Shortest token accepted from a token file (a generated token is 32+ random bytes).
MIN_TOKEN_LENGTH = 32


class ScimClientSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The client's name: in the mirror's source tag (``scim:<id>``) and every audit record.
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,26}$")
    token_sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    token_file: Path | None = None

    @model_validator(mode="after")
    def _one_token(self) -> ScimClientSettings:
        if (self.token_sha256 is None) == (self.token_file is None):
            raise ValueError("give exactly one of token_sha256 and token_file")
        if self.token_file is not None:  # checked with the rest of the settings, at start-up
            _read_token(self.id, self.token_file)
        return self


class ScimSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # No clients: every /scim/v2 request other than discovery is refused (401).
    clients: list[ScimClientSettings] = Field(default_factory=list)
    # Requests per minute per client (a full Entra sync of 10k users stays far below).
    requests_per_minute: int = Field(default=60_000, ge=1)
    # Failed authentications per minute per source address before 429.
    auth_failures_per_minute: int = Field(default=30, ge=1)
    # Largest request body (bytes); also bounded by the server's max_request_bytes.
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)

    @model_validator(mode="after")
    def _unique_ids(self) -> ScimSettings:
        ids = [c.id for c in self.clients]
        if len(ids) != len(set(ids)):
            raise ValueError("scim client ids must be unique")
        return self


@dataclass(frozen=True)
class ClientDigests:
    """client id -> SHA-256 of its token."""

    digests: tuple[tuple[str, bytes], ...]

    @classmethod
    def load(cls, settings: ScimSettings) -> ClientDigests:
        out: list[tuple[str, bytes]] = []
        for client in settings.clients:
            if client.token_sha256 is not None:
                out.append((client.id, bytes.fromhex(client.token_sha256)))
                continue
            assert client.token_file is not None
            token = _read_token(client.id, client.token_file)
            out.append((client.id, hashlib.sha256(token.encode()).digest()))
        return cls(tuple(out))


def _read_token(client_id: str, path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"scim client {client_id}: token_file {path} cannot be read") from exc
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(
            f"scim client {client_id}: token_file holds fewer than {MIN_TOKEN_LENGTH} characters"
        )
    return token


def authenticate(digests: ClientDigests, presented: str) -> str | None:
    """The id of the client whose token is ``presented``, or ``None``."""
    digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
    found: str | None = None
    for client_id, expected in digests.digests:
        if hmac.compare_digest(digest, expected) and found is None:
            found = client_id
    return found
