"""Links from identities asserted by outside systems to users of the directory mirror.

An upstream OpenID provider, Microsoft Entra, Okta or a posture-API caller names a user by
its own stable identifier: the pair (issuer, subject) — OIDC ``iss``/``sub``, Entra
``entra:{tid}``/``oid``, Okta's user id, the API caller's name and its login name for the user.
A link maps that pair to OUR directory user id. Once linked, a login resolves by the pair
only (names asserted later are not looked at). The issuer is a namespace: a link made by one
issuer is never used for another, and a user has at most one subject per issuer.

Who may create the first link, and how, is the caller's policy
(:mod:`posture_gateway.directory.identity`); this store only keeps the links.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = ["IdentityLink", "IdentityLinkStore", "MAX_ISSUER", "MAX_SUBJECT"]

#: Longest issuer / subject a link can hold (longer identities cannot be linked).
MAX_ISSUER = 512
MAX_SUBJECT = 256


@dataclass(frozen=True, slots=True)
class IdentityLink:
    """(issuer, subject) -> our directory user id, with when and how it was made."""

    issuer: str
    subject: str
    user_id: str
    linked_at: datetime
    method: str  # admin | email | username


class IdentityLinkStore(Protocol):
    def get(self, issuer: str, subject: str) -> IdentityLink | None:
        """The link of (issuer, subject), or ``None`` when there is none. Exact match: case
        and whitespace matter."""
        ...

    def link(self, link: IdentityLink) -> bool:
        """Create the link. ``True`` if created; ``False`` if exactly this link (same issuer,
        subject and user) already exists.

        Raises :class:`mdm_core.domain.errors.Conflict` when (issuer, subject) is linked to another
        user, or when the user already has a link from this issuer (another subject): one
        subject per issuer per user. Raises ValueError when issuer or subject is empty or
        longer than :data:`MAX_ISSUER` / :data:`MAX_SUBJECT`.
        """
        ...

    def for_user(self, user_id: str) -> list[IdentityLink]:
        """Every link of the user, sorted by (issuer, subject); ``[]`` for none or an unknown
        user."""
        ...

    def unlink(self, issuer: str, subject: str) -> bool:
        """Remove the link of (issuer, subject); ``False`` if there was none."""
        ...

    def unlink_user(self, user_id: str) -> int:
        """Remove every link of the user (the user left the directory); how many went."""
        ...
