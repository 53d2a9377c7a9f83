"""The ONE definition of the claims and scopes of the gateway's OpenID provider.

Every claim an ID token or the UserInfo endpoint can carry is a :class:`ClaimDefinition`
here: its name, JSON type, the scope that releases it, where its value comes from, and what it
means. This table drives

- the tokens: :func:`token_claims` releases profile and directory claims by scope
  (OpenID Connect Core 1.0 section 5.4) and passes on only the posture claims defined here —
  a claim a device gate invents never reaches a token;
- the discovery document: ``claims_supported`` is :func:`claims_supported`,
  ``scopes_supported`` is :data:`SUPPORTED_SCOPES`;
- the docs: the claim table of ``docs/oidc-provider.md`` is :func:`markdown_table` (a test
  compares the two, and discovery with both).

Unknown scopes in a request are ignored (OIDC Core 3.1.2.1), never an error:
:func:`known_scopes` drops them.

The ``groups`` scope releases the ``groups`` claim: the user's effective directory groups in
the mirror (nested groups expanded, :func:`mdm_core.directory.mirror.effective_group_names`), read
when the token is issued.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mdm_core.directory.mirror import effective_group_names
from mdm_core.storage.uow import Storage

__all__ = [
    "ClaimDefinition",
    "CLAIMS",
    "SUPPORTED_SCOPES",
    "POSTURE_CLAIMS",
    "claims_supported",
    "known_scopes",
    "token_claims",
    "posture_claims",
    "directory_groups_reader",
    "markdown_table",
    "GroupsReader",
]

Source = Literal["protocol", "profile", "directory", "posture"]

#: Who reads a user's groups for the ``groups`` claim: user id -> group names.
GroupsReader = Callable[[str], Sequence[str]]


@dataclass(frozen=True, slots=True)
class ClaimDefinition:
    """One claim: name, JSON type, the scope releasing it, its source, what it means."""

    name: str
    type: str  # as written in the docs: string, integer, "array of strings", ...
    scope: str  # "openid": every ID token (protocol and posture claims)
    source: Source
    description: str


#: Scopes the provider understands; anything else in a request is ignored.
SUPPORTED_SCOPES: tuple[str, ...] = ("openid", "profile", "email", "groups", "offline_access")

CLAIMS: tuple[ClaimDefinition, ...] = (
    # -- protocol (OpenID Connect Core 2, RFC 9207) -------------------------------------------
    ClaimDefinition("iss", "string", "openid", "protocol", "Issuer: the gateway's issuer URL"),
    ClaimDefinition("sub", "string", "openid", "protocol", "Our directory user id"),
    ClaimDefinition("aud", "string", "openid", "protocol", "The relying party's client_id"),
    ClaimDefinition("azp", "string", "openid", "protocol", "Authorized party: the client_id"),
    ClaimDefinition("exp", "integer", "openid", "protocol", "Expiry (seconds since the epoch)"),
    ClaimDefinition("iat", "integer", "openid", "protocol", "Issued at (seconds since the epoch)"),
    ClaimDefinition(
        "auth_time", "integer", "openid", "protocol", "When the user authenticated (epoch s)"
    ),
    ClaimDefinition(
        "nonce",
        "string",
        "openid",
        "protocol",
        "The authorization request's nonce (not on refresh)",
    ),
    ClaimDefinition(
        "acr",
        "string",
        "openid",
        "protocol",
        "`urn:posture-gateway:acr:managed-device` when the device passed",
    ),
    ClaimDefinition(
        "amr",
        "array of strings",
        "openid",
        "protocol",
        "How the user and device authenticated (RFC 8176), e.g. `pwd`, `fed`, `hwk`",
    ),
    ClaimDefinition(
        "at_hash", "string", "openid", "protocol", "Left half of the access token's SHA-256"
    ),
    ClaimDefinition(
        "sid", "string", "openid", "protocol", "The gateway SSO session the login ran in"
    ),
    # -- profile claims (OpenID Connect Core 5.4) ---------------------------------------------
    ClaimDefinition("name", "string", "profile", "profile", "Display name"),
    ClaimDefinition("preferred_username", "string", "profile", "profile", "Login name"),
    ClaimDefinition("email", "string", "email", "profile", "Verified email address"),
    # -- directory mirror -----------------------------------------------------------------------
    ClaimDefinition(
        "groups",
        "array of strings",
        "groups",
        "directory",
        "The user's directory groups (nested groups expanded), names sorted",
    ),
    # -- posture: the device decision of this login (posture_gateway/login/device_check.py)
    # ----------
    ClaimDefinition("device_id", "string", "openid", "posture", "The proven device's id"),
    ClaimDefinition(
        "posture_outcome", "string", "openid", "posture", "`allow`, `warn` or `restrict`"
    ),
    ClaimDefinition(
        "compliance_state", "string", "openid", "posture", "`compliant` (allow) or `noncompliant`"
    ),
    ClaimDefinition(
        "posture_evaluated_at",
        "integer",
        "openid",
        "posture",
        "When the decision was made (epoch s)",
    ),
    ClaimDefinition(
        "posture_policy_ids",
        "array of strings",
        "openid",
        "posture",
        "Policies evaluated for the decision",
    ),
    ClaimDefinition(
        "posture_age_s", "integer", "openid", "posture", "Age of the posture used, in seconds"
    ),
)

#: Names of the posture claims (what a device gate's verdict may put into a token).
POSTURE_CLAIMS: frozenset[str] = frozenset(c.name for c in CLAIMS if c.source == "posture")

_BY_SCOPE: dict[str, tuple[str, ...]] = {
    scope: tuple(c.name for c in CLAIMS if c.scope == scope and c.source == "profile")
    for scope in SUPPORTED_SCOPES
}


def claims_supported() -> list[str]:
    """``claims_supported`` of the discovery document, in definition order."""
    return [c.name for c in CLAIMS]


def known_scopes(requested: Iterable[str]) -> list[str]:
    """The requested scopes this provider understands, in request order, once each."""
    return [s for s in dict.fromkeys(requested) if s in SUPPORTED_SCOPES]


def posture_claims(posture: Mapping[str, Any]) -> dict[str, Any]:
    """The defined posture claims of a verdict; anything else is dropped."""
    return {k: v for k, v in posture.items() if k in POSTURE_CLAIMS}


def token_claims(
    scope: str,
    *,
    user_id: str,
    profile: Mapping[str, Any],
    posture: Mapping[str, Any] | None = None,
    groups: GroupsReader | None = None,
) -> dict[str, Any]:
    """The non-protocol claims of an ID token (or, without ``posture``, a UserInfo answer):
    the profile claims ``scope`` releases, ``groups`` when the ``groups`` scope is granted
    (empty when no reader is wired), and the defined posture claims."""
    scopes = set(scope.split())
    out: dict[str, Any] = {}
    for name in scopes:
        for claim in _BY_SCOPE.get(name, ()):
            if profile.get(claim):
                out[claim] = profile[claim]
    if "groups" in scopes:
        out["groups"] = sorted(groups(user_id)) if groups is not None else []
    if posture:
        out.update(posture_claims(posture))
    return out


def directory_groups_reader(storage: Storage) -> GroupsReader:
    """Groups from the directory mirror, nested groups expanded (one unit of work per read).

    A storage error propagates: the token endpoint then answers 503 and issues nothing.
    """
    if storage is None:
        raise ValueError("directory_groups_reader needs a storage")

    def read(user_id: str) -> list[str]:
        with storage.unit_of_work() as uow:
            return sorted(effective_group_names(uow, user_id))

    return read


def markdown_table() -> str:
    """The claim table of ``docs/oidc-provider.md``, generated from :data:`CLAIMS`."""
    lines = ["| claim | type | scope | source | meaning |", "|---|---|---|---|---|"]
    for c in CLAIMS:
        lines.append(f"| `{c.name}` | {c.type} | `{c.scope}` | {c.source} | {c.description} |")
    return "\n".join(lines)
