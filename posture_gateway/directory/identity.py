"""Maps identities asserted by outside systems onto users of the directory mirror.

Implements :class:`idp_connectors.identity.UserDirectory` on ``mdm_core``'s directory and its
identity links (:mod:`mdm_core.storage.identity_links`). The upstream OpenID providers (broker
mode), Microsoft Entra (EAM), the Okta hook and the posture API each name a user by
(issuer, subject):

1. **Linked**: the link (issuer, subject) -> user id decides, and ONLY it — a name or email
   the issuer asserts is not looked at. A link to a disabled or deleted user gives no access.
2. **Not linked yet**: the issuer's :class:`~idp_connectors.identity.IdentityLinking` rule
   decides whether a first link is made (``none``: never; ``email``: a verified email in an
   allowed domain; ``username``: opted in). A user who already has a link from this issuer
   (another subject) is not linked again; a disabled user, or one offboarding blocked, is never
   linked. A link made for one issuer is never used for another: a second upstream asserting
   ``alice`` gets nothing from alice's link at the first. Every link made and every first
   link refused is audited.

Which rule applies to which issuer comes from the integration settings
(:meth:`DirectoryUserResolver.from_settings`); an issuer with no rule gets ``none``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from idp_connectors.identity import DirectoryAccount, ExternalIdentity, IdentityLinking
from mdm_core.domain.errors import Conflict
from mdm_core.storage.directory import DirectoryUser
from mdm_core.storage.identity_links import MAX_ISSUER, MAX_SUBJECT, IdentityLink
from mdm_core.storage.uow import Storage, UnitOfWork
from posture_gateway.integrations.settings import IntegrationSettings

__all__ = ["DirectoryUserResolver", "POSTURE_API_ISSUER_PREFIX", "linking_rules"]

log = logging.getLogger(__name__)

#: Issuer of a posture-API caller's identities: this prefix + the caller's name.
POSTURE_API_ISSUER_PREFIX = "posture-api:"

_NO_LINKING = IdentityLinking()
_MAX_NAME = 320


def linking_rules(
    settings: IntegrationSettings,
) -> tuple[dict[str, IdentityLinking], dict[str, IdentityLinking]]:
    """(rules by exact issuer, rules by issuer prefix) of the configured integrations.

    Raises ValueError when two configurations give one issuer different rules.
    """
    exact: dict[str, IdentityLinking] = {}

    def put(issuer: str, rule: IdentityLinking, where: str) -> None:
        if issuer in exact and exact[issuer] != rule:
            raise ValueError(f"{where}: issuer {issuer!r} is configured with two linking rules")
        exact[issuer] = rule

    for upstream in settings.upstreams:
        put(upstream.issuer, upstream.linking, f"integrations.upstreams[{upstream.name}]")
    if settings.entra is not None:
        for tid in settings.entra.hint.tenant_ids:
            put(f"entra:{tid}", settings.entra.linking, "integrations.entra.linking")
    put(settings.okta.identity_issuer, settings.okta.linking, "integrations.okta.linking")
    prefix = {POSTURE_API_ISSUER_PREFIX: settings.posture_api.user_linking}
    return exact, prefix


def _well_formed(value: str | None, limit: int) -> bool:
    """A string we can look up: bounded, no control characters (a NUL is bad input, never
    a reason to ask the database)."""
    if value is None:
        return True
    return len(value) <= limit and not any(ord(c) < 32 or ord(c) == 127 for c in value)


def _domain_of(address: str) -> str | None:
    local, at, domain = address.rpartition("@")
    return domain.lower() if at and local and domain else None


class DirectoryUserResolver:
    """(issuer, subject) links first; a first link only by the issuer's explicit rule."""

    def __init__(
        self,
        storage: Storage,
        *,
        rules: Mapping[str, IdentityLinking] | None = None,
        prefix_rules: Mapping[str, IdentityLinking] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if storage is None:
            raise ValueError("DirectoryUserResolver needs a storage")
        self._storage = storage
        self._rules = dict(rules or {})
        self._prefix_rules = dict(prefix_rules or {})
        self._clock = clock

    @classmethod
    def from_settings(
        cls, storage: Storage, settings: IntegrationSettings
    ) -> DirectoryUserResolver:
        exact, prefix = linking_rules(settings)
        return cls(storage, rules=exact, prefix_rules=prefix)

    def rule_for(self, issuer: str) -> IdentityLinking:
        """The first-link rule of ``issuer`` (``none`` when nothing is configured for it)."""
        if issuer in self._rules:
            return self._rules[issuer]
        for prefix, rule in self._prefix_rules.items():
            if issuer.startswith(prefix) and len(issuer) > len(prefix):
                return rule
        return _NO_LINKING

    def resolve(self, identity: ExternalIdentity) -> str | None:
        if not (
            identity.issuer
            and identity.subject
            and _well_formed(identity.issuer, MAX_ISSUER)
            and _well_formed(identity.subject, MAX_SUBJECT)
            and _well_formed(identity.username, _MAX_NAME)
            and _well_formed(identity.email, _MAX_NAME)
        ):
            return None
        with self._storage.unit_of_work() as uow:
            link = uow.identity_links.get(identity.issuer, identity.subject)
            if link is None:
                return self._first_link(uow, identity)
            return _active_id(uow.directory_users.get(link.user_id))

    def account(self, user_id: str) -> DirectoryAccount | None:
        """Our directory's names for ``user_id`` (tokens carry these, not an issuer's)."""
        with self._storage.unit_of_work() as uow:
            user = uow.directory_users.get(user_id)
        if user is None:
            return None
        return DirectoryAccount(user.id, user.username, user.email, user.display_name)

    # ---- first link ----------------------------------------------------------------------

    def _first_link(self, uow: UnitOfWork, identity: ExternalIdentity) -> str | None:
        rule = self.rule_for(identity.issuer)
        candidate, refusal = self._candidate(uow, rule, identity)
        if candidate is None:
            return self._refuse(uow, identity, refusal or "no_matching_user", rule)
        if not candidate.active:
            return self._refuse(uow, identity, "user_disabled", rule, candidate.id)
        if uow.offboarding.blocked(candidate.id) is not None:
            # Offboarding blocked them: no new way in, even before the directory says disabled.
            return self._refuse(uow, identity, "user_offboarding", rule, candidate.id)
        taken = [
            x for x in uow.identity_links.for_user(candidate.id) if x.issuer == identity.issuer
        ]
        if taken:
            # One subject per issuer per user: a new subject asserting a linked user's name is
            # another account at that issuer, not this user.
            return self._refuse(uow, identity, "user_linked_to_another_subject", rule, candidate.id)
        link = IdentityLink(
            issuer=identity.issuer,
            subject=identity.subject,
            user_id=candidate.id,
            linked_at=self._clock(),
            method=rule.link_by,
        )
        try:
            uow.identity_links.link(link)
        except Conflict:
            # A concurrent first login linked it (or another subject) first: go by what is
            # stored now, never by the name.
            stored = uow.identity_links.get(identity.issuer, identity.subject)
            if stored is None:
                return self._refuse(uow, identity, "user_linked_to_another_subject", rule)
            return _active_id(uow.directory_users.get(stored.user_id))
        uow.audit.record(
            f"idp:{identity.issuer}",
            "identity.linked",
            f"user:{candidate.id}",
            "linked",
            {"issuer": identity.issuer, "subject": identity.subject, "method": rule.link_by},
        )
        log.info(
            "linked %s subject to directory user %s by %s",
            identity.issuer,
            candidate.id,
            rule.link_by,
        )
        return candidate.id

    @staticmethod
    def _candidate(
        uow: UnitOfWork, rule: IdentityLinking, identity: ExternalIdentity
    ) -> tuple[DirectoryUser | None, str | None]:
        """The user the rule lets this identity claim, or (None, why not)."""
        if rule.link_by == "email":
            email = identity.email
            if not email:
                return None, "no_email"
            if not identity.email_verified:
                return None, "email_not_verified"
            if _domain_of(email) not in rule.allowed_email_domains:
                return None, "email_domain_not_allowed"
            matches = uow.directory_users.find_by_email(email)
            if len(matches) > 1:
                return None, "email_ambiguous"
            if matches:
                return matches[0], None
            return uow.directory_users.find_by_username(email), None
        if rule.link_by == "username":
            username = identity.username
            if not username:
                return None, "no_username"
            if rule.allowed_username_domains and (
                _domain_of(username) not in rule.allowed_username_domains
            ):
                return None, "username_domain_not_allowed"
            return uow.directory_users.find_by_username(username), None
        return None, "not_linked"

    @staticmethod
    def _refuse(
        uow: UnitOfWork,
        identity: ExternalIdentity,
        reason: str,
        rule: IdentityLinking,
        user_id: str | None = None,
    ) -> None:
        detail: dict[str, Any] = {
            "issuer": identity.issuer,
            "subject": identity.subject,
            "reason": reason,
            "link_by": rule.link_by,
            "asserted_username": identity.username,
            "asserted_email": identity.email,
        }
        if user_id is not None:
            detail["user_id"] = user_id
        uow.audit.record(
            f"idp:{identity.issuer}",
            "identity.link_refused",
            f"idp:{identity.issuer}",
            "refused",
            detail,
        )
        log.warning("no directory user for a %s identity: %s", identity.issuer, reason)
        return None


def _active_id(user: DirectoryUser | None) -> str | None:
    return user.id if user is not None and user.active else None
