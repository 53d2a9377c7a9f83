"""Who an outside identity provider says the user is, and the seam that maps it to our directory.

An upstream IdP, Entra's ``id_token_hint``, Okta's hook payload and a posture-API caller each
assert an identity in their own terms. Connectors translate that into one
:class:`ExternalIdentity`; the :class:`UserDirectory` seam (wired by the composition root to
the directory mirror in ``mdm_core``) answers which of *our* users it is, or nobody.

Identities are linked by (issuer, subject) — the only pair OpenID Connect promises is unique
and stable (Core 5.7: ``preferred_username`` and ``email`` are neither). How an identity that
is not linked yet may be linked the FIRST time is explicit configuration per issuer:
:class:`IdentityLinking`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

__all__ = [
    "ExternalIdentity",
    "UserDirectory",
    "UserAccounts",
    "DirectoryAccount",
    "IdentityLinking",
    "LinkBy",
]

LinkBy = Literal["none", "email", "username"]


@dataclass(frozen=True, slots=True)
class ExternalIdentity:
    """An identity asserted by ``issuer`` (an IdP's issuer URL or a configured caller name)."""

    issuer: str
    subject: str  # the issuer's stable id for the user (OIDC ``sub``, Entra ``oid``, Okta id)
    email: str | None = None
    email_verified: bool = False
    username: str | None = None  # login name / UPN / preferred_username as the issuer sees it


def _domains(value: tuple[str, ...]) -> tuple[str, ...]:
    out = tuple(d.strip().lower() for d in value)
    for domain in out:
        if not domain or "@" in domain or domain.startswith(".") or " " in domain:
            raise ValueError(f"not a domain name: {domain!r}")
    return out


class IdentityLinking(BaseModel):
    """How an identity from one issuer may be linked to a directory user the first time.

    - ``none`` (default): never automatically; only identities an admin linked
      (``posture users link``) get in.
    - ``email``: a VERIFIED email (``email_verified: true``) whose domain is in
      ``allowed_email_domains`` (required) names the directory user with that email (exactly
      one), or whose username is that email.
    - ``username``: the asserted username (``preferred_username``, UPN, Okta login) is taken
      as the directory username — an explicit opt-in: trust that this issuer's names are ours.
      ``allowed_username_domains``, when set, limits it to ``name@domain`` usernames.

    Whatever the rule: a disabled user is never linked, a user already linked to another
    subject of the same issuer is not linked again, and a link made for one issuer is never
    used for another.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    link_by: LinkBy = "none"
    allowed_email_domains: tuple[str, ...] = ()
    allowed_username_domains: tuple[str, ...] = ()

    @field_validator("allowed_email_domains", "allowed_username_domains")
    @classmethod
    def _lower(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _domains(value)

    @model_validator(mode="after")
    def _email_needs_domains(self) -> IdentityLinking:
        if self.link_by == "email" and not self.allowed_email_domains:
            raise ValueError(
                "link_by: email needs allowed_email_domains (which domains it may claim)"
            )
        return self


class UserDirectory(Protocol):
    """Maps identities asserted by outside systems onto our directory users."""

    def resolve(self, identity: ExternalIdentity) -> str | None:
        """Our directory user id for ``identity``, or ``None``.

        Contract: an identity already linked resolves by (issuer, subject) ONLY — names it
        asserts are not looked at. An identity not linked yet is linked (and resolved) only
        when the issuer's :class:`IdentityLinking` rule allows it. ``None`` when no user
        matches, when the match is ambiguous, when the rule refuses, or when the user is
        disabled (a disabled user never logs in). Never raises for an unknown or malformed
        identity; raises only when the directory is unreachable (callers then fail closed).
        """
        ...


@dataclass(frozen=True, slots=True)
class DirectoryAccount:
    """How OUR directory names a user (what our tokens say, whatever an issuer asserted)."""

    user_id: str
    username: str
    email: str | None = None
    display_name: str | None = None


@runtime_checkable
class UserAccounts(Protocol):
    """Optional companion of :class:`UserDirectory`: our own names for a resolved user."""

    def account(self, user_id: str) -> DirectoryAccount | None:
        """The directory's account of ``user_id``; ``None`` for an unknown id."""
        ...
