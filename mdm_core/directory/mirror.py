"""The directory mirror: users, nested groups, memberships and account state.

LDAP/AD sync and the SCIM server (``idp_connectors``) write through :class:`DirectoryService`;
the access plane reads :func:`user_context` (id, effective group names, active) for every
decision. Effective groups are transitive (a user in ``payroll`` which is in ``finance`` is in
both) and resolution is cycle safe (directories do contain cycles; each group is visited once).

Every membership change writes a ``directory.membership_changed`` event to the outbox in the
same unit of work, with the users whose effective groups may have changed. A
:class:`GroupChangeTracker` then compares each affected user's effective groups before and
after the unit of work's changes and writes one ``directory.user_groups_changed`` event per
user whose groups really changed (``before`` / ``after`` / ``added`` / ``removed``): that is
what device convergence (:mod:`mdm_core.device.convergence`) and cache invalidation hang off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import UTC, datetime

from mdm_core.bus.events import DomainEvent, EventType
from mdm_core.directory.precedence import SourceOfTruth
from mdm_core.domain.device_lifecycle import end_user_access
from mdm_core.policy.model import UserContext
from mdm_core.storage.directory import (
    DirectoryGroup,
    DirectoryUser,
    MemberKind,
    Membership,
)
from mdm_core.storage.uow import Storage, UnitOfWork

__all__ = [
    "DirectoryService",
    "GroupChangeTracker",
    "effective_group_ids",
    "effective_group_names",
    "transitive_user_members",
    "user_context",
    "add_membership",
    "remove_membership",
    "MAX_NESTING",
]

log = logging.getLogger(__name__)

#: Nesting deeper than this is cut off (and logged): real directories stay far below it.
MAX_NESTING = 64


def effective_group_ids(uow: UnitOfWork, user_id: str) -> frozenset[str]:
    """Every group the user is in, directly or through nested groups (cycle safe)."""
    seen = {m.group_id for m in uow.memberships.parents(MemberKind.USER, [user_id])}
    frontier = set(seen)
    for _ in range(MAX_NESTING):
        if not frontier:
            break
        parents = {m.group_id for m in uow.memberships.parents(MemberKind.GROUP, frontier)}
        frontier = parents - seen
        seen |= frontier
    else:
        if frontier:
            log.warning("group nesting of user %s deeper than %d levels; cut", user_id, MAX_NESTING)
    return frozenset(seen)


def effective_group_names(uow: UnitOfWork, user_id: str) -> frozenset[str]:
    """Names of :func:`effective_group_ids` (what policies target): one store call (one
    recursive statement, or none when the check-in statement read them already)."""
    return uow.memberships.effective_group_names(user_id)


def transitive_user_members(uow: UnitOfWork, group_id: str) -> frozenset[str]:
    """Users in ``group_id`` directly or through nested groups (cycle safe)."""
    users: set[str] = set()
    seen = {group_id}
    frontier = {group_id}
    for _ in range(MAX_NESTING):
        if not frontier:
            break
        members = uow.memberships.members(frontier)
        users.update(m.member_id for m in members if m.member_kind is MemberKind.USER)
        groups = {m.member_id for m in members if m.member_kind is MemberKind.GROUP}
        frontier = groups - seen
        seen |= frontier
    return frozenset(users)


def user_context(uow: UnitOfWork, user_id: str) -> UserContext | None:
    """The user as the decision engine sees them, or ``None`` if not in the mirror; a user
    offboarding blocked (``user_blocks``, until reinstated) is ``active=False``."""
    user = uow.directory_users.get(user_id)
    if user is None:
        return None
    # Offboarding's block outlives the directory row: a sync saying "active" lifts nothing.
    active = user.active and uow.offboarding.blocked(user.id) is None
    return UserContext(id=user.id, groups=effective_group_names(uow, user.id), active=active)


def _affected(uow: UnitOfWork, membership: Membership) -> list[str]:
    if membership.member_kind is MemberKind.USER:
        return [membership.member_id]
    return sorted(transitive_user_members(uow, membership.member_id))


def _event(uow: UnitOfWork, membership: Membership, change: str, at: datetime) -> DomainEvent:
    names = uow.directory_groups.names([membership.group_id])
    return DomainEvent(
        type=EventType.GROUP_MEMBERSHIP_CHANGED,
        subject=membership.group_id,
        payload={
            "change": change,
            "group_id": membership.group_id,
            "group_name": names.get(membership.group_id),
            "member_id": membership.member_id,
            "member_kind": membership.member_kind.value,
            "affected_users": _affected(uow, membership),
        },
        occurred_at=at,
    )


class GroupChangeTracker:
    """Effective groups of the users a unit of work's membership changes touch, before and
    after: :meth:`watch` before each change, :meth:`flush` once at the end."""

    def __init__(self, uow: UnitOfWork, *, cause: str) -> None:
        self.uow = uow
        self.cause = cause
        self.before: dict[str, frozenset[str]] = {}
        self.after: dict[str, frozenset[str]] = {}  # known final groups (see settle)

    def watch(self, user_ids: Collection[str]) -> None:
        """Remember the current effective groups of ``user_ids`` (the first time only)."""
        for user_id in user_ids:
            self.after.pop(user_id, None)  # about to change again: read it at flush
            if user_id not in self.before:
                self.before[user_id] = effective_group_names(self.uow, user_id)

    def settle(self, user_id: str, before: frozenset[str], after: frozenset[str]) -> None:
        """A bulk writer's user whose groups it computed itself (a new user: none before,
        ``after`` from the nesting it wrote): flushed like a watched one, without reading
        them back. A later :meth:`watch` of the user drops ``after`` (read at flush)."""
        self.before.setdefault(user_id, before)
        self.after[user_id] = after

    def flush(self, *, at: datetime) -> list[DomainEvent]:
        """Write one ``directory.user_groups_changed`` event per user whose effective groups
        differ now; returns them (``[]`` when nothing really changed)."""
        events = []
        for user_id in sorted(self.before):
            before = self.before[user_id]
            after = self.after.get(user_id)
            if after is None:
                after = effective_group_names(self.uow, user_id)
            if after == before:
                continue
            events.append(
                DomainEvent(
                    type=EventType.USER_GROUPS_CHANGED,
                    subject=user_id,
                    payload={
                        "user_id": user_id,
                        "before": sorted(before),
                        "after": sorted(after),
                        "added": sorted(after - before),
                        "removed": sorted(before - after),
                        "cause": self.cause,
                    },
                    occurred_at=at,
                )
            )
        self.before.clear()
        self.after.clear()
        if events:
            self.uow.outbox.add(events)
        return events


def add_membership(
    uow: UnitOfWork,
    membership: Membership,
    *,
    at: datetime,
    tracker: GroupChangeTracker | None = None,
) -> bool:
    """Add ``membership`` and its event in ``uow``; ``False`` (no event) if it existed.
    With a ``tracker``, the users it may affect are watched first.

    Raises :class:`mdm_core.domain.errors.NotFound` for an unknown group.
    """
    if tracker is not None:
        tracker.watch(_affected(uow, membership))
    if not uow.memberships.add(membership):
        return False
    uow.outbox.add([_event(uow, membership, "added", at)])
    return True


def remove_membership(
    uow: UnitOfWork,
    membership: Membership,
    *,
    at: datetime,
    tracker: GroupChangeTracker | None = None,
) -> bool:
    """Remove ``membership`` and write its event; ``False`` (no event) if it did not exist.
    With a ``tracker``, the users it may affect are watched first."""
    event = _event(uow, membership, "removed", at)  # affected users computed before removal
    if tracker is not None:
        tracker.watch(event.payload["affected_users"])
    if not uow.memberships.remove(membership):
        return False
    uow.outbox.add([event])
    return True


class DirectoryService:
    """Writes and reads of the directory mirror, each in its own unit of work."""

    def __init__(
        self,
        storage: Storage,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        source_of_truth: SourceOfTruth | None = None,
    ) -> None:
        if storage is None:
            raise ValueError("DirectoryService needs a storage")
        self.storage = storage
        self.clock = clock
        #: The configured per-attribute source of truth; directory sources pass it to
        #: :func:`mdm_core.directory.sync.sync_source` (``source_of_truth=``).
        self.source_of_truth = source_of_truth or SourceOfTruth()

    def upsert_user(self, user: DirectoryUser) -> bool:
        """Insert or update a user; ``True`` if anything changed. An account that becomes
        disabled loses its access credentials in the same unit of work."""
        with self.storage.unit_of_work() as uow:
            before = None if user.active else uow.directory_users.get(user.id)
            changed = uow.directory_users.upsert(user)
            if before is not None and before.active:
                end_user_access(uow, user.id, reason="user_disabled", at=self.clock())
            return changed

    def set_active(self, user_id: str, active: bool) -> DirectoryUser:
        """Enable or disable an account (a disabled user is blocked at every decision, and
        loses its access credentials in the same unit of work)."""
        at = self.clock()
        with self.storage.unit_of_work() as uow:
            updated = uow.directory_users.set_active(user_id, active, at=at)
            if not active:
                end_user_access(uow, user_id, reason="user_disabled", at=at)
            return updated

    def upsert_group(self, group: DirectoryGroup) -> bool:
        with self.storage.unit_of_work() as uow:
            return uow.directory_groups.upsert(group)

    def add_member(self, group_id: str, member_id: str, kind: MemberKind) -> bool:
        at = self.clock()
        with self.storage.unit_of_work() as uow:
            tracker = GroupChangeTracker(uow, cause="directory.add_member")
            added = add_membership(
                uow, Membership(group_id, member_id, kind), at=at, tracker=tracker
            )
            tracker.flush(at=at)
            return added

    def remove_member(self, group_id: str, member_id: str, kind: MemberKind) -> bool:
        at = self.clock()
        with self.storage.unit_of_work() as uow:
            tracker = GroupChangeTracker(uow, cause="directory.remove_member")
            removed = remove_membership(
                uow, Membership(group_id, member_id, kind), at=at, tracker=tracker
            )
            tracker.flush(at=at)
            return removed

    def replace_members(
        self, group_id: str, members: Collection[tuple[str, MemberKind]]
    ) -> tuple[int, int]:
        """Make ``members`` the group's direct members (a full sync); returns (added, removed).
        One event per change, all in one unit of work."""
        at = self.clock()
        wanted = {Membership(group_id, member_id, kind) for member_id, kind in members}
        with self.storage.unit_of_work() as uow:
            tracker = GroupChangeTracker(uow, cause="directory.replace_members")
            current = set(uow.memberships.members([group_id]))
            removed = sum(
                remove_membership(uow, m, at=at, tracker=tracker) for m in sorted(current - wanted)
            )
            added = sum(
                add_membership(uow, m, at=at, tracker=tracker) for m in sorted(wanted - current)
            )
            tracker.flush(at=at)
        return added, removed

    def user_context(self, user_id: str) -> UserContext | None:
        with self.storage.unit_of_work() as uow:
            return user_context(uow, user_id)

    def group_names(self) -> frozenset[str]:
        """Every group name in the mirror (policy files' group references are checked
        against it)."""
        with self.storage.unit_of_work() as uow:
            return frozenset(uow.directory_groups.names().values())
