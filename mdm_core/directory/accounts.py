"""Account state changes that end access: disable and delete, with their domain events.

A directory source (SCIM ``active: false`` or ``DELETE``, an LDAP disable) calls these inside
its own unit of work, so the state change, the revocation of the account's access credentials
(:func:`mdm_core.domain.device_lifecycle.end_user_access`) and the event the offboarding job
consumes (``directory.account_disabled`` / ``directory.account_deleted``, written to the
outbox) commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from mdm_core.bus.events import DomainEvent, EventType
from mdm_core.directory.mirror import effective_group_names, remove_membership
from mdm_core.domain.device_lifecycle import end_user_access
from mdm_core.storage.directory import MemberKind
from mdm_core.storage.uow import UnitOfWork

__all__ = ["account_event", "disable_account", "delete_account"]


def account_event(
    kind: str,
    user_id: str,
    *,
    username: str | None,
    source: str,
    actor: str,
    reason: str,
    at: datetime,
    groups: Collection[str] = (),
) -> DomainEvent:
    """THE ``directory.account_disabled`` / ``directory.account_deleted`` event (one payload
    for every source: the offboarding job reads these fields and no others). ``groups``: the
    user's effective group names read BEFORE the change removed any membership, so the
    offboarding policy that applies is still known once the user row is gone."""
    return DomainEvent(
        type=kind,
        subject=user_id,
        payload={
            "user_id": user_id,
            "username": username,
            "source": source,
            "actor": actor,
            "reason": reason,
            "groups": sorted(groups),
        },
        occurred_at=at,
    )


def disable_account(uow: UnitOfWork, user_id: str, *, at: datetime, actor: str, source: str) -> int:
    """Mark the (existing) user inactive, revoke its credentials and publish
    ``directory.account_disabled``; returns how many credentials were live.

    Raises :class:`mdm_core.domain.errors.NotFound` for an unknown user.
    """
    user = uow.directory_users.get(user_id)
    groups = effective_group_names(uow, user_id) if user is not None else frozenset()
    uow.directory_users.set_active(user_id, False, at=at)
    revoked = end_user_access(uow, user_id, reason="user_disabled", at=at, actor=actor)
    uow.outbox.add(
        [
            account_event(
                EventType.ACCOUNT_DISABLED,
                user_id,
                username=user.username if user is not None else None,
                source=source,
                actor=actor,
                reason="disabled_in_source",
                at=at,
                groups=groups,
            )
        ]
    )
    return revoked


def delete_account(uow: UnitOfWork, user_id: str, *, at: datetime, actor: str, source: str) -> bool:
    """Remove the user from the mirror (its memberships, each with its membership event),
    revoke its credentials and publish ``directory.account_deleted``; ``False`` (nothing
    written) for an unknown user."""
    user = uow.directory_users.get(user_id)
    if user is None:
        return False
    groups = effective_group_names(uow, user_id)  # before the memberships go
    for membership in uow.memberships.parents(MemberKind.USER, [user_id]):
        remove_membership(uow, membership, at=at)
    end_user_access(uow, user_id, reason="user_deleted", at=at, actor=actor)
    uow.directory_users.delete(user_id)
    uow.outbox.add(
        [
            account_event(
                EventType.ACCOUNT_DELETED,
                user_id,
                username=user.username,
                source=source,
                actor=actor,
                reason="deleted_in_source",
                at=at,
                groups=groups,
            )
        ]
    )
    return True
