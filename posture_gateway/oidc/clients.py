"""Relying parties (OAuth clients) from the YAML clients file, validated once at start.

File format (``settings.oidc.clients_file``)::

    clients:
      - client_id: expenses
        name: Expenses
        token_endpoint_auth_method: client_secret_basic   # or client_secret_post, none
        client_secret_hash: "sha256$..."                  # `posture clients new-secret`
        redirect_uris: [https://expenses.example.com/oidc/callback]
        post_logout_redirect_uris: [https://expenses.example.com/]
        scopes: [openid, profile, email]
        grant_types: [authorization_code, refresh_token]
        id_token_signed_response_alg: RS256               # or ES256

Redirect URIs are matched EXACTLY (no prefix, no normalisation: a trailing slash is a
different URI). They must be absolute https URIs, or http on a loopback host (RFC 8252), with
no fragment. Public clients (``none``) have no secret; PKCE (S256) is required of every client.
:class:`Client` adapts an entry to authlib's client model.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from posture_gateway.oidc.claims import SUPPORTED_SCOPES, known_scopes
from posture_gateway.oidc.passwords import verify_client_secret
from posture_gateway.oidc.yamlconf import ConfigFileError, load_entries
from posture_gateway.signing.key_ring import Alg

__all__ = [
    "SUPPORTED_SCOPES",
    "AuthMethod",
    "ClientConfig",
    "Client",
    "ClientRegistry",
    "load_clients",
]

AuthMethod = Literal["client_secret_basic", "client_secret_post", "none"]
_PUBLIC: AuthMethod = "none"  # token_endpoint_auth_method of a public client
GrantType = Literal["authorization_code", "refresh_token"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_uri(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.fragment or "#" in uri:
        raise ValueError(f"{uri!r}: a redirect URI must not have a fragment")
    if not parts.hostname:
        raise ValueError(f"{uri!r}: must be an absolute URI with a host")
    if parts.scheme == "https":
        return uri
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return uri
    raise ValueError(f"{uri!r}: must be https (http only on a loopback host)")


class ClientConfig(BaseModel):
    """One relying party as written in the clients file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    name: str | None = None
    token_endpoint_auth_method: AuthMethod = "client_secret_basic"  # noqa: S105 - a method name
    client_secret_hash: str | None = None
    redirect_uris: tuple[str, ...] = Field(min_length=1)
    post_logout_redirect_uris: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ("openid",)
    grant_types: tuple[GrantType, ...] = ("authorization_code",)
    id_token_signed_response_alg: Alg = "RS256"  # noqa: S105 - an algorithm name

    @field_validator("redirect_uris", "post_logout_redirect_uris")
    @classmethod
    def _uris(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for uri in value:
            _check_uri(uri)
        if len(set(value)) != len(value):
            raise ValueError("duplicate URI")
        return value

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(SUPPORTED_SCOPES))
        if unknown:
            raise ValueError(f"unsupported scopes {unknown}; supported: {list(SUPPORTED_SCOPES)}")
        if "openid" not in value:
            raise ValueError("'openid' must be allowed: this is an OpenID provider")
        return value

    @field_validator("client_secret_hash")
    @classmethod
    def _secret_format(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sha256$", "scrypt$")):
            raise ValueError("must be a 'sha256$...' or 'scrypt$...' hash, never a plain secret")
        return value

    @model_validator(mode="after")
    def _secret_matches_method(self) -> ClientConfig:
        if self.token_endpoint_auth_method == _PUBLIC and self.client_secret_hash:
            raise ValueError("a public client (token_endpoint_auth_method: none) has no secret")
        if self.token_endpoint_auth_method != _PUBLIC and not self.client_secret_hash:
            raise ValueError(
                f"client_secret_hash is required for {self.token_endpoint_auth_method}"
            )
        if "authorization_code" not in self.grant_types:
            raise ValueError("grant_types must include authorization_code")
        return self


class Client:
    """authlib's client model over a :class:`ClientConfig` (duck-typed ``ClientMixin``)."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.client_id = config.client_id
        self.id_token_signed_response_alg: Alg = config.id_token_signed_response_alg

    @property
    def is_public(self) -> bool:
        return self.config.token_endpoint_auth_method == _PUBLIC

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # OpenID Connect requires redirect_uri in every request: no default.
        return None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The requested scopes this client may have; None (invalid_scope) without openid.

        Scopes the provider does not understand are ignored (OpenID Connect Core 3.1.2.1), and
        so are scopes this client is not configured for (RFC 6749 3.3: the grant may be
        narrower than the request; the token response's ``scope`` says what was granted).
        """
        requested = known_scopes((scope or "").split())
        # This is an OpenID provider: every request must ask for openid (and so a nonce).
        if "openid" not in requested:
            return None
        return " ".join(s for s in requested if s in self.config.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.config.redirect_uris  # exact string match only

    def check_post_logout_redirect_uri(self, uri: str) -> bool:
        return uri in self.config.post_logout_redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        encoded = self.config.client_secret_hash
        return encoded is not None and verify_client_secret(client_secret, encoded)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.config.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.config.grant_types


class ClientRegistry:
    """The configured relying parties by client id."""

    def __init__(self, clients: Iterable[ClientConfig] = ()) -> None:
        self._clients: Mapping[str, Client] = {c.client_id: Client(c) for c in clients}

    def get(self, client_id: str | None) -> Client | None:
        if not client_id:
            return None
        return self._clients.get(client_id)

    def __len__(self) -> int:
        return len(self._clients)

    def id_token_algs(self) -> dict[str, list[str]]:
        """Which clients ask for which ID token signing algorithm."""
        algs: dict[str, list[str]] = {}
        for client in self._clients.values():
            algs.setdefault(client.id_token_signed_response_alg, []).append(client.client_id)
        return algs


def load_clients(path: Path | None) -> ClientRegistry:
    """Load and validate the clients file (None: no clients). Raises ``ConfigFileError``."""
    if path is None:
        return ClientRegistry()
    entries = load_entries(path, "clients", ClientConfig)
    seen: dict[str, int] = {}
    problems: list[str] = []
    for entry in entries:
        config: ClientConfig = entry.value
        if config.client_id in seen:
            problems.append(
                f"{path}:{entry.line}: duplicate client_id {config.client_id!r} "
                f"(first on line {seen[config.client_id]})"
            )
        seen.setdefault(config.client_id, entry.line)
    if problems:
        raise ConfigFileError(problems)
    return ClientRegistry(entry.value for entry in entries)
