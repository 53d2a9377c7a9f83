"""Directory mirror storage: users (with account state), groups, and memberships.

Three small protocols, one per table family. A membership links a group to a member that is
either a user or another group (nested groups); cycles can be stored (directories contain
them) and are made harmless by the resolution in :mod:`mdm_core.directory.mirror`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

__all__ = [
    "DirectoryUser",
    "DirectoryGroup",
    "MemberKind",
    "Membership",
    "DirectoryUserStore",
    "DirectoryGroupStore",
    "MembershipStore",
]


class MemberKind(StrEnum):
    USER = "user"
    GROUP = "group"


@dataclass(frozen=True, slots=True)
class DirectoryUser:
    id: str
    username: str
    active: bool
    source: str  # local | ldap | scim
    updated_at: datetime
    email: str | None = None
    display_name: str | None = None
    external_id: str | None = None


@dataclass(frozen=True, slots=True)
class DirectoryGroup:
    id: str
    name: str
    source: str
    updated_at: datetime
    external_id: str | None = None


@dataclass(frozen=True, slots=True, order=True)
class Membership:
    group_id: str
    member_id: str
    member_kind: MemberKind


class DirectoryUserStore(Protocol):
    def upsert(self, user: DirectoryUser) -> bool:
        """Insert ``user`` or replace every field of the user with the same id.

        Returns ``True`` if anything changed (a new user, or a different field other than
        ``updated_at``). Raises :class:`mdm_core.domain.errors.Conflict` when another user already
        has the username.
        """
        ...

    def get(self, user_id: str) -> DirectoryUser | None:
        """The user, or ``None`` for an unknown id."""
        ...

    def find_by_username(self, username: str) -> DirectoryUser | None:
        """The user with exactly this username, or ``None``."""
        ...

    def taken(self, ids: Collection[str], usernames: Collection[str]) -> dict[str, str]:
        """Which of ``ids`` and ``usernames`` the mirror already holds, in bulk: a map of
        each held id to itself and each held username to its user's id."""
        ...

    def insert_new(self, users: Sequence[DirectoryUser]) -> None:
        """Insert users the caller checked are new (:meth:`taken`), in one statement.

        Raises :class:`mdm_core.domain.errors.Conflict` when an id or username is taken after
        all (a concurrent writer); nothing is then inserted.
        """
        ...

    def find_by_email(self, email: str) -> list[DirectoryUser]:
        """Users whose email equals ``email`` ignoring case, sorted by id; ``[]`` when none
        (emails are not unique in a directory: callers decide what several matches mean)."""
        ...

    def set_active(self, user_id: str, active: bool, *, at: datetime) -> DirectoryUser:
        """Set the account state; returns the updated user.

        Raises :class:`mdm_core.domain.errors.NotFound` for an unknown id.
        """
        ...

    def delete(self, user_id: str) -> bool:
        """Remove the user, every membership naming it and its identity links
        (:mod:`mdm_core.storage.identity_links`); ``False`` for an unknown id."""
        ...

    def list(self, source: str | None = None) -> list[DirectoryUser]:
        """Every user (of ``source`` only, when given), sorted by username; ``[]`` if none."""
        ...


class DirectoryGroupStore(Protocol):
    def upsert(self, group: DirectoryGroup) -> bool:
        """Insert or replace the group with ``group.id``; ``True`` if anything changed.

        Raises :class:`mdm_core.domain.errors.Conflict` when another group already has the name.
        """
        ...

    def get(self, group_id: str) -> DirectoryGroup | None:
        """The group, or ``None`` for an unknown id."""
        ...

    def names(self, group_ids: Collection[str] | None = None) -> dict[str, str]:
        """Map of group id -> name for ``group_ids`` (unknown ids are left out), or for every
        group when ``None``; ``{}`` when there are none."""
        ...

    def find_by_name(self, name: str) -> DirectoryGroup | None:
        """The group with exactly this name, or ``None``."""
        ...

    def insert_new(self, groups: Sequence[DirectoryGroup]) -> None:
        """Insert groups the caller checked are new (id and name free), in one statement.

        Raises :class:`mdm_core.domain.errors.Conflict` when an id or name is taken after
        all (a concurrent writer); nothing is then inserted.
        """
        ...

    def delete(self, group_id: str) -> bool:
        """Remove the group, its memberships and every membership naming it as a member;
        ``False`` for an unknown id."""
        ...

    def list(self, source: str | None = None) -> list[DirectoryGroup]:
        """Every group (of ``source`` only, when given), sorted by name; ``[]`` if none."""
        ...


class MembershipStore(Protocol):
    def add(self, membership: Membership) -> bool:
        """Add the membership; ``False`` if it already existed.

        Raises :class:`mdm_core.domain.errors.NotFound` when the group is unknown (a user or group
        member need not exist yet: directories sync members before their records).
        """
        ...

    def pairs(self, kind: MemberKind) -> list[tuple[str, str]]:
        """Every direct membership of members of ``kind``, as ``(member_id, group_id)``, in no
        order (a full sync's diff reads them all at once)."""
        ...

    def add_new(self, memberships: Sequence[Membership]) -> None:
        """Add memberships the caller knows are new, of groups that exist, in one statement
        (a first sync's members: their member records were inserted in the same unit of
        work). No event: the caller writes them."""
        ...

    def remove(self, membership: Membership) -> bool:
        """Remove the membership; ``False`` if it did not exist."""
        ...

    def members(self, group_ids: Collection[str]) -> list[Membership]:
        """Direct memberships of the given groups, sorted; ``[]`` for none or unknown ids."""
        ...

    def parents(self, kind: MemberKind, member_ids: Collection[str]) -> list[Membership]:
        """Memberships whose member is one of ``member_ids`` of ``kind`` (the groups that
        directly contain them), sorted; ``[]`` when none."""
        ...

    def effective_group_names(self, user_id: str) -> frozenset[str]:
        """Names of every group ``user_id`` is in, directly or through nested groups (cycle
        safe; nesting followed 64 levels deep); empty for an unknown user or none."""
        ...
