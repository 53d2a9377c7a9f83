"""Who an outside identity provider says the user is, and the seam that maps it to our directory.

An upstream IdP, Entra's ``id_token_hint``, Okta's hook payload and a posture-API caller each
assert an identity in their own terms. Connectors translate that into one
:class:`ExternalIdentity`; the :class:`UserDirectory` seam (wired by the composition root to
the directory mirror in ``mdm_core``) answers which of *our* users it is, or nobody.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["ExternalIdentity", "UserDirectory"]


@dataclass(frozen=True, slots=True)
class ExternalIdentity:
    """An identity asserted by ``issuer`` (an IdP's issuer URL or a configured caller name)."""

    issuer: str
    subject: str  # the issuer's stable id for the user (OIDC ``sub``, Entra ``oid``, Okta id)
    email: str | None = None
    email_verified: bool = False
    username: str | None = None  # login name / UPN / preferred_username as the issuer sees it


class UserDirectory(Protocol):
    """Maps identities asserted by outside systems onto our directory users."""

    def resolve(self, identity: ExternalIdentity) -> str | None:
        """Our directory user id for ``identity``, or ``None``.

        Contract: match on (issuer, subject) first, then on username, then on ``email`` only
        when ``email_verified`` is true. ``None`` when no user matches, when the match is
        ambiguous, or when the matched user is disabled (a disabled user never logs in).
        Never raises for an unknown identity; raises only when the directory is unreachable
        (callers then fail closed).
        """
        ...
