"""A directory *source* written into the mirror: idempotent upsert, source-tagged, one UoW.

A source (the local users file, ``posture directory import``, later LDAP or SCIM) hands
:func:`sync_source` its whole view: users with the groups they are directly in, and groups
with the groups they are nested in. In one unit of work (all or nothing):

- users and groups of the source are inserted or updated (an unchanged record is left
  alone, so running it twice changes nothing and writes no event);
- a user's direct memberships become exactly those listed (each change is a
  ``directory.membership_changed`` event, like any other membership change); memberships
  follow the *member's* owner, so a source never removes another source's members;
- records owned by another source are not touched: a user or group id owned elsewhere is
  reported as skipped, except that a source listed in ``takes_over`` may be claimed (an
  import claims the users file's entry for the same person, whose password stays in the
  file while the directory record now comes from the import);
- with ``prune``, users of the source that are no longer listed are *disabled* (never
  deleted: their devices and audit trail keep naming them), and re-enabled when listed again;
  ``gone`` names such users explicitly (a source that sends only what changed, e.g. LDAP);
- an account that becomes disabled loses its access credentials and writes a
  ``directory.account_disabled`` event; a pruned or gone one a ``directory.account_deleted``
  event (both consumed by offboarding), in the same unit of work.

Group references by name reuse an existing group of any source; an unknown one is created,
owned by this source.

With a configured per-attribute source of truth (``source_of_truth``, a
:class:`mdm_core.directory.precedence.SourceOfTruth`; the gateway passes
``directory.source_of_truth`` from its settings), users are no longer owned by one source:

- each source's view of a user is recorded as its *claims*
  (:mod:`mdm_core.storage.directory_claims`) and the mirror record is resolved attribute by
  attribute (``username``, ``email``, ``display_name``, ``active``, ``groups``): a
  lower-priority source's value never overwrites a higher one's;
- every disagreement is reported in ``SyncSummary.overrides`` (``overrode``: this source's
  value won over another's; ``ignored``: this source's value lost to a higher one);
- ``prune`` withdraws the source's claims about users it no longer lists; a user no source
  claims any more is disabled, one still claimed elsewhere is resolved from those claims.

Every sync ends by writing one ``directory.user_groups_changed`` event per user whose
*effective* groups changed (:class:`mdm_core.directory.mirror.GroupChangeTracker`), in the
same unit of work: device convergence and access re-evaluation follow it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mdm_core.bus.events import DomainEvent, EventType
from mdm_core.directory.accounts import account_event
from mdm_core.directory.mirror import (
    MAX_NESTING,
    GroupChangeTracker,
    add_membership,
    effective_group_names,
    remove_membership,
)
from mdm_core.directory.precedence import Override, SourceOfTruth
from mdm_core.domain.device_lifecycle import end_user_access
from mdm_core.domain.errors import Conflict
from mdm_core.storage.directory import DirectoryGroup, DirectoryUser, MemberKind, Membership
from mdm_core.storage.uow import Storage, UnitOfWork

#: New users, new groups and their memberships are written in batches (``False``: every
#: record on the row path, which the batches must equal event for event; the contract test
#: compares the two).
BULK_WRITES = True

__all__ = [
    "SourceUser",
    "SourceGroup",
    "SyncSummary",
    "sync_source",
    "write_resolved",
    "record_claims",
]


@dataclass(frozen=True, slots=True)
class SourceUser:
    id: str
    username: str
    email: str | None = None
    display_name: str | None = None
    active: bool = True
    groups: tuple[str, ...] = ()  # names of the groups the user is directly in


@dataclass(frozen=True, slots=True)
class SourceGroup:
    name: str
    id: str | None = None  # default: the name
    groups: tuple[str, ...] = ()  # names of the groups this group is nested in


@dataclass
class SyncSummary:
    """What one sync did; ``changed`` counts users whose record or memberships changed."""

    source: str
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "id (owned by <source>)"
    groups_added: list[str] = field(default_factory=list)
    groups_changed: list[str] = field(default_factory=list)
    memberships_added: int = 0
    memberships_removed: int = 0
    #: Attribute conflicts between sources (with a configured source of truth only).
    overrides: list[Override] = field(default_factory=list)
    #: Users whose effective groups changed (one ``directory.user_groups_changed`` each).
    groups_changed_users: list[str] = field(default_factory=list)

    @property
    def overrode(self) -> list[Override]:
        """Conflicts this source won: its value replaced a lower-priority source's."""
        return [o for o in self.overrides if o.winner == self.source]

    @property
    def ignored(self) -> list[Override]:
        """Conflicts this source lost: its value was not applied (a higher one wins)."""
        return [o for o in self.overrides if o.loser == self.source]

    def counts(self) -> dict[str, int]:
        return {
            "added": len(self.added),
            "changed": len(self.changed),
            "unchanged": len(self.unchanged),
            "disabled": len(self.disabled),
            "skipped": len(self.skipped),
            "groups_added": len(self.groups_added),
            "groups_changed": len(self.groups_changed),
            "memberships_added": self.memberships_added,
            "memberships_removed": self.memberships_removed,
            **(
                {"overrode": len(self.overrode), "ignored": len(self.ignored)}
                if self.overrides
                else {}
            ),
        }

    @property
    def touched(self) -> bool:
        return bool(
            self.added
            or self.changed
            or self.disabled
            or self.groups_added
            or self.groups_changed
            or self.memberships_added
            or self.memberships_removed
        )


def _owned(record_source: str, source: str, takes_over: Collection[str]) -> bool:
    return record_source == source or record_source in takes_over


class _Sync:
    def __init__(
        self,
        uow: UnitOfWork,
        source: str,
        takes_over: Collection[str],
        at: datetime,
        summary: SyncSummary,
    ) -> None:
        self.uow, self.source, self.takes_over, self.at = uow, source, takes_over, at
        self.summary = summary
        self.skip_conflicts = False
        self.actor = "system"  # who runs the sync (audit, account events)
        self.group_ids: dict[str, str] = {}  # name -> id
        self.known_groups: dict[str, str] | None = None  # name -> id in the mirror, lazily
        self.tracker = GroupChangeTracker(uow, cause=f"directory.sync:{source}")

    def group_id(self, name: str, wanted_id: str | None = None) -> str:
        """The id of the group called ``name``, created for this source when unknown."""
        if name in self.group_ids:
            return self.group_ids[name]
        if self.known_groups is None:  # every group's id by name, read once
            self.known_groups = {n: i for i, n in self.uow.directory_groups.names().items()}
        known = self.known_groups.get(name)
        if known is not None:
            self.group_ids[name] = known
            return known
        existing = self.uow.directory_groups.find_by_name(name)
        if existing is None:
            gid = self.free_group_id(wanted_id or name)
            self.uow.directory_groups.upsert(
                DirectoryGroup(id=gid, name=name, source=self.source, updated_at=self.at)
            )
            self.summary.groups_added.append(name)
        else:
            gid = existing.id
        self.group_ids[name] = gid
        return gid

    def free_group_id(self, wanted: str) -> str:
        """``wanted``, or ``<source>:<wanted>`` when another group already has that id (a new
        group never takes over an existing record)."""
        for candidate in (wanted, f"{self.source}:{wanted}"):
            if self.uow.directory_groups.get(candidate) is None:
                return candidate
        raise Conflict(f"group id {wanted!r} belongs to another group")

    def memberships(self, kind: MemberKind, member_id: str, names: Sequence[str]) -> bool:
        wanted = {Membership(self.group_id(n), member_id, kind) for n in names}
        current = set(self.uow.memberships.parents(kind, [member_id]))
        removed = sum(
            remove_membership(self.uow, m, at=self.at, tracker=self.tracker)
            for m in sorted(current - wanted)
        )
        added = sum(
            add_membership(self.uow, m, at=self.at, tracker=self.tracker)
            for m in sorted(wanted - current)
        )
        self.summary.memberships_added += added
        self.summary.memberships_removed += removed
        return bool(added or removed)

    def group(self, group: SourceGroup) -> None:
        existing = self.uow.directory_groups.find_by_name(group.name)
        if existing is not None and not _owned(existing.source, self.source, self.takes_over):
            self.summary.skipped.append(f"group {group.name} (owned by {existing.source})")
            self.group_ids[group.name] = existing.id
            return
        gid = existing.id if existing is not None else self.free_group_id(group.id or group.name)
        changed = self.uow.directory_groups.upsert(
            DirectoryGroup(id=gid, name=group.name, source=self.source, updated_at=self.at)
        )
        self.group_ids[group.name] = gid
        nested = self.memberships(MemberKind.GROUP, gid, group.groups)
        if existing is None:
            self.summary.groups_added.append(group.name)
        elif changed or nested:
            self.summary.groups_changed.append(group.name)

    def groups(self, groups: Sequence[SourceGroup]) -> None:
        """Every group of the source, as :meth:`group` one after the other would (same
        records, memberships, events and summary), the reads done once and the new records
        and memberships written in batches."""
        if not BULK_WRITES:
            for group in groups:
                self.group(group)
            return
        if groups:
            batch = _GroupBatch(self)
            for group in groups:
                batch.group(group)
            batch.flush()

    def account_gone(self, user: DirectoryUser, event: str, reason: str) -> None:
        """The account stopped being usable: credentials revoked, offboarding event written."""
        end_user_access(self.uow, user.id, reason="user_disabled", at=self.at)
        self.uow.outbox.add(
            [
                account_event(
                    event,
                    user.id,
                    username=user.username,
                    source=self.source,
                    actor=self.actor,
                    reason=reason,
                    at=self.at,
                    groups=effective_group_names(self.uow, user.id),
                )
            ]
        )

    def user(self, user: SourceUser) -> None:
        existing = self.uow.directory_users.get(user.id)
        if existing is not None and not _owned(existing.source, self.source, self.takes_over):
            self.summary.skipped.append(f"{user.id} (owned by {existing.source})")
            return
        if self.skip_conflicts:
            holder = self.uow.directory_users.find_by_username(user.username)
            if holder is not None and holder.id != user.id:
                self.summary.skipped.append(
                    f"{user.id} (username {user.username} belongs to {holder.id})"
                )
                return
        record = DirectoryUser(
            id=user.id,
            username=user.username,
            active=user.active,
            source=self.source,
            updated_at=self.at,
            email=user.email,
            display_name=user.display_name,
        )
        changed = self.uow.directory_users.upsert(record)  # Conflict: username elsewhere
        if existing is not None and existing.active and not user.active:
            self.account_gone(record, EventType.ACCOUNT_DISABLED, "disabled_in_source")
        groups = self.memberships(MemberKind.USER, user.id, user.groups)
        if existing is None:
            self.summary.added.append(user.id)
        elif changed or groups:
            self.summary.changed.append(user.id)
        else:
            self.summary.unchanged.append(user.id)

    # --- new users in bulk (a first sync) ------------------------------------------------

    def fresh(self, users: Sequence[SourceUser]) -> set[str]:
        """Ids of ``users`` that are new to the mirror with a username nobody holds: they
        take the bulk path (any doubt leaves a user on the row path)."""
        if not users:
            return set()
        taken = self.uow.directory_users.taken([u.id for u in users], [u.username for u in users])
        return {u.id for u in users if u.id not in taken and u.username not in taken}

    def insert_fresh(self, users: Sequence[SourceUser]) -> dict[str, list[DomainEvent]]:
        """Insert new users and their memberships in a few statements; returns each user's
        ``directory.membership_changed`` events (the row path's, in its order) and settles
        its effective groups with the tracker (none before: it is new)."""
        if not users:
            return {}
        self.uow.directory_users.insert_new(
            [
                DirectoryUser(
                    id=u.id,
                    username=u.username,
                    active=u.active,
                    source=self.source,
                    updated_at=self.at,
                    email=u.email,
                    display_name=u.display_name,
                )
                for u in users
            ]
        )
        wanted = {
            u.id: sorted({Membership(self.group_id(n), u.id, MemberKind.USER) for n in u.groups})
            for u in users
        }
        added = [m for ms in wanted.values() for m in ms]
        self.uow.memberships.add_new(added)
        self.summary.memberships_added += len(added)
        names = self.uow.directory_groups.names()
        nesting = _Nesting(self.uow, names)
        events: dict[str, list[DomainEvent]] = {}
        for user_id, memberships in wanted.items():
            events[user_id] = [
                DomainEvent(
                    type=EventType.GROUP_MEMBERSHIP_CHANGED,
                    subject=m.group_id,
                    payload={
                        "change": "added",
                        "group_id": m.group_id,
                        "group_name": names.get(m.group_id),
                        "member_id": m.member_id,
                        "member_kind": m.member_kind.value,
                        "affected_users": [m.member_id],
                    },
                    occurred_at=self.at,
                )
                for m in memberships
            ]
            self.tracker.settle(
                user_id, frozenset(), nesting.names({m.group_id for m in memberships})
            )
        return events

    # --- with a per-attribute source of truth ----------------------------------------------

    def claimed_user(self, user: SourceUser, truth: SourceOfTruth) -> None:
        """Record ``user`` as this source's claims, then resolve the record from every
        source's claims (see the module docstring)."""
        existing = self.uow.directory_users.get(user.id)
        if self.skip_conflicts:
            holder = self.uow.directory_users.find_by_username(user.username)
            if holder is not None and holder.id != user.id:
                self.summary.skipped.append(
                    f"{user.id} (username {user.username} belongs to {holder.id})"
                )
                return
        claims = self.uow.source_claims.for_user(user.id)
        if existing is not None and existing.source not in claims:
            # A record written before claims were kept: its values stand as its source's.
            claims[existing.source] = self.record_claims(existing)
        mine = _claims_of(user)
        self.uow.source_claims.put(user.id, self.source, mine, at=self.at)
        claims[self.source] = mine
        changed = self.apply(user.id, existing, claims, truth)
        if existing is None:
            self.summary.added.append(user.id)
        elif changed:
            self.summary.changed.append(user.id)
        else:
            self.summary.unchanged.append(user.id)

    def record_claims(self, record: DirectoryUser) -> dict[str, Any]:
        return record_claims(self.uow, record)

    def apply(
        self,
        user_id: str,
        existing: DirectoryUser | None,
        claims: dict[str, dict[str, Any]],
        truth: SourceOfTruth,
    ) -> bool:
        """Write the record resolved from ``claims``; ``True`` if anything changed."""
        owner = self.source
        if existing is not None and not _owned(existing.source, self.source, self.takes_over):
            owner = existing.source  # the record keeps its creator; attributes are resolved
        changed, overrides = write_resolved(
            self.uow,
            user_id,
            existing,
            claims,
            truth,
            writer=self.source,
            owner=owner,
            actor=self.actor,
            at=self.at,
            set_groups=lambda uid, names: self.memberships(MemberKind.USER, uid, names),
        )
        self.summary.overrides.extend(overrides)
        return changed

    def withdraw(self, listed: Collection[str], truth: SourceOfTruth) -> None:
        """``prune`` with a source of truth: forget this source's claims about the users it
        no longer lists; disable a user nobody claims any more."""
        for user_id in self.uow.source_claims.users(self.source):
            if user_id in listed:
                continue
            self.uow.source_claims.remove(user_id, self.source)
            existing = self.uow.directory_users.get(user_id)
            if existing is None:
                continue
            rest = self.uow.source_claims.for_user(user_id)
            if rest:
                if self.apply(user_id, existing, rest, truth):
                    self.summary.changed.append(user_id)
            elif existing.active:
                self.uow.directory_users.set_active(user_id, False, at=self.at)
                end_user_access(self.uow, user_id, reason="user_disabled", at=self.at)
                self.summary.disabled.append(user_id)


def record_claims(uow: UnitOfWork, record: DirectoryUser) -> dict[str, Any]:
    """A mirror record's values as its source's claims (a record written before claims were
    kept: its values stand as its creator's)."""
    direct = uow.memberships.parents(MemberKind.USER, [record.id])
    names = uow.directory_groups.names([m.group_id for m in direct])
    return {
        "username": record.username,
        "email": record.email,
        "display_name": record.display_name,
        "active": record.active,
        "groups": sorted(names.values()),
    }


def write_resolved(
    uow: UnitOfWork,
    user_id: str,
    existing: DirectoryUser | None,
    claims: Mapping[str, Mapping[str, Any]],
    truth: SourceOfTruth,
    *,
    writer: str,
    owner: str,
    actor: str,
    at: datetime,
    set_groups: Callable[[str, Sequence[str]], bool],
) -> tuple[bool, list[Override]]:
    """Write the mirror record resolved from every source's ``claims`` (the one precedence
    step of every source: a sync, a SCIM write); ``(changed, overrides)``.

    ``writer`` is the source writing now (it wins among unlisted sources), ``owner`` the
    record's ``source`` column (its creator), ``set_groups(user_id, names)`` makes the user's
    direct groups exactly ``names``. An account that the resolution turns from active to
    inactive loses its credentials and writes ``directory.account_disabled`` (source
    ``writer``), in ``uow``. Raises :class:`Conflict` when the username belongs to another
    user."""
    resolved, overrides = truth.resolve(user_id, claims, writer)
    record = DirectoryUser(
        id=user_id,
        username=str(resolved["username"]),
        active=bool(resolved.get("active", True)),
        source=owner,
        updated_at=at,
        email=resolved.get("email"),
        display_name=resolved.get("display_name"),
        external_id=existing.external_id if existing is not None else None,
    )
    changed = uow.directory_users.upsert(record)  # Conflict: username elsewhere
    if existing is not None and existing.active and not record.active:
        end_user_access(uow, user_id, reason="user_disabled", at=at, actor=actor)
        uow.outbox.add(
            [
                account_event(
                    EventType.ACCOUNT_DISABLED,
                    user_id,
                    username=record.username,
                    source=writer,
                    actor=actor,
                    reason="disabled_in_source",
                    at=at,
                    groups=effective_group_names(uow, user_id),
                )
            ]
        )
    groups = set_groups(user_id, tuple(resolved.get("groups", ())))
    return changed or groups, overrides


class _GroupBatch:
    """:meth:`_Sync.group` for many groups: the mirror's groups and nesting read once and
    kept in memory, new groups, memberships and their events written in batches. Pending
    writes are flushed before anything reads the database (a user's effective groups before
    a change, an update of an existing record), so every read sees what the row path would."""

    def __init__(self, sync: _Sync) -> None:
        self.sync = sync
        uow = sync.uow
        records = uow.directory_groups.list()
        self.by_name = {g.name: g for g in records}
        self.by_id = {g.id: g for g in records}
        self.parents: dict[str, set[Membership]] = {}
        for m in uow.memberships.parents(MemberKind.GROUP, list(self.by_id)):
            self.parents.setdefault(m.member_id, set()).add(m)
        self.graph: dict[str, set[tuple[str, MemberKind]]] | None = None  # members, lazily
        self.new_groups: list[DirectoryGroup] = []
        self.new_memberships: list[Membership] = []
        self.events: list[DomainEvent] = []

    def flush(self) -> None:
        uow = self.sync.uow
        uow.directory_groups.insert_new(self.new_groups)
        uow.memberships.add_new(self.new_memberships)
        uow.outbox.add(self.events)
        self.new_groups, self.new_memberships, self.events = [], [], []

    def create(self, record: DirectoryGroup) -> None:
        self.new_groups.append(record)
        self.by_name[record.name] = record
        self.by_id[record.id] = record

    def free_id(self, wanted: str) -> str:
        for candidate in (wanted, f"{self.sync.source}:{wanted}"):
            if candidate not in self.by_id:
                return candidate
        raise Conflict(f"group id {wanted!r} belongs to another group")

    def group_id(self, name: str) -> str:
        sync = self.sync
        if name in sync.group_ids:
            return sync.group_ids[name]
        existing = self.by_name.get(name)
        if existing is None:
            gid = self.free_id(name)
            self.create(DirectoryGroup(id=gid, name=name, source=sync.source, updated_at=sync.at))
            sync.summary.groups_added.append(name)
        else:
            gid = existing.id
        sync.group_ids[name] = gid
        return gid

    def group(self, group: SourceGroup) -> None:
        sync = self.sync
        existing = self.by_name.get(group.name)
        if existing is not None and not _owned(existing.source, sync.source, sync.takes_over):
            sync.summary.skipped.append(f"group {group.name} (owned by {existing.source})")
            sync.group_ids[group.name] = existing.id
            return
        gid = existing.id if existing is not None else self.free_id(group.id or group.name)
        record = DirectoryGroup(id=gid, name=group.name, source=sync.source, updated_at=sync.at)
        if existing is None:
            self.create(record)
            changed = True
        elif (existing.name, existing.source, existing.external_id) != (
            record.name,
            record.source,
            record.external_id,
        ):
            self.flush()
            changed = sync.uow.directory_groups.upsert(record)
            self.by_name[record.name] = self.by_id[gid] = record
        else:
            changed = False
        sync.group_ids[group.name] = gid
        nested = self.nesting(gid, group.groups)
        if existing is None:
            sync.summary.groups_added.append(group.name)
        elif changed or nested:
            sync.summary.groups_changed.append(group.name)

    def nesting(self, gid: str, names: Sequence[str]) -> bool:
        sync = self.sync
        wanted = {Membership(self.group_id(n), gid, MemberKind.GROUP) for n in names}
        current = set(self.parents.get(gid, ()))
        removed = sorted(current - wanted)
        added = sorted(wanted - current)
        for m in removed:
            affected = self.affected(m.member_id)
            event = self.event(m, "removed", affected)
            self.watch(affected)
            self.flush()
            if sync.uow.memberships.remove(m):
                self.events.append(event)
            self.parents[gid].discard(m)
            if self.graph is not None:
                self.graph.get(m.group_id, set()).discard((m.member_id, m.member_kind))
        for m in added:
            affected = self.affected(m.member_id)
            self.watch(affected)
            self.new_memberships.append(m)
            self.events.append(self.event(m, "added", affected))
            self.parents.setdefault(gid, set()).add(m)
            if self.graph is not None:
                self.graph.setdefault(m.group_id, set()).add((m.member_id, m.member_kind))
        sync.summary.memberships_added += len(added)
        sync.summary.memberships_removed += len(removed)
        return bool(added or removed)

    def watch(self, users: list[str]) -> None:
        tracker = self.sync.tracker
        if any(u not in tracker.before for u in users):
            self.flush()  # their groups before this change are read from the database
        tracker.watch(users)

    def affected(self, group_id: str) -> list[str]:
        """:func:`mdm_core.directory.mirror.transitive_user_members`, over the graph kept in
        memory (read once, at the first nesting change)."""
        if self.graph is None:
            self.flush()
            graph: dict[str, set[tuple[str, MemberKind]]] = {}
            for m in self.sync.uow.memberships.members(list(self.by_id)):
                graph.setdefault(m.group_id, set()).add((m.member_id, m.member_kind))
            self.graph = graph
        users: set[str] = set()
        seen = {group_id}
        frontier = {group_id}
        for _ in range(MAX_NESTING):
            if not frontier:
                break
            below: set[str] = set()
            for g in frontier:
                for member_id, kind in self.graph.get(g, ()):
                    if kind is MemberKind.USER:
                        users.add(member_id)
                    else:
                        below.add(member_id)
            frontier = below - seen
            seen |= frontier
        return sorted(users)

    def event(self, m: Membership, change: str, affected: list[str]) -> DomainEvent:
        group = self.by_id.get(m.group_id)
        return DomainEvent(
            type=EventType.GROUP_MEMBERSHIP_CHANGED,
            subject=m.group_id,
            payload={
                "change": change,
                "group_id": m.group_id,
                "group_name": group.name if group is not None else None,
                "member_id": m.member_id,
                "member_kind": m.member_kind.value,
                "affected_users": affected,
            },
            occurred_at=self.sync.at,
        )


class _Nesting:
    """Effective group names of a set of direct groups, from the nesting read once (what
    :func:`mdm_core.directory.mirror.effective_group_ids` walks, cycle safe, as deep)."""

    def __init__(self, uow: UnitOfWork, names: dict[str, str]) -> None:
        self.group_names = names
        self.parents: dict[str, set[str]] = {}
        for m in uow.memberships.parents(MemberKind.GROUP, list(names)):
            self.parents.setdefault(m.member_id, set()).add(m.group_id)
        self.memo: dict[frozenset[str], frozenset[str]] = {}

    def names(self, direct: Collection[str]) -> frozenset[str]:
        key = frozenset(direct)
        found = self.memo.get(key)
        if found is None:
            seen = set(key)
            frontier = set(key)
            for _ in range(MAX_NESTING):
                if not frontier:
                    break
                up = {p for g in frontier for p in self.parents.get(g, ())}
                frontier = up - seen
                seen |= frontier
            found = frozenset(self.group_names[g] for g in seen if g in self.group_names)
            self.memo[key] = found
        return found


def _claims_of(user: SourceUser) -> dict[str, Any]:
    return {
        "username": user.username,
        "email": user.email,
        "display_name": user.display_name,
        "active": user.active,
        "groups": sorted(set(user.groups)),
    }


def sync_source(
    storage: Storage,
    source: str,
    users: Sequence[SourceUser],
    groups: Sequence[SourceGroup] = (),
    *,
    prune: bool = False,
    gone: Collection[str] = (),
    takes_over: Collection[str] = (),
    actor: str = "system",
    skip_conflicts: bool = False,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    source_of_truth: SourceOfTruth | None = None,
) -> SyncSummary:
    """Write ``source``'s users and groups into the mirror (see the module docstring).

    The sync is audited (``directory.sync``, subject the source, the counts as detail) in
    the same unit of work: always when an ``actor`` other than ``system`` runs it (an admin
    import), otherwise only when it changed something (a start-up sync).

    Raises :class:`mdm_core.domain.errors.Conflict` (and writes nothing) when a username belongs to
    a user of another id, or when the input repeats an id or username. With
    ``skip_conflicts`` such a user is skipped (listed in ``skipped``) instead: one bad entry
    then keeps only that person out, not everyone (a start-up sync must not stop the server).

    ``source_of_truth`` (configured, i.e. non-empty) switches users from single-source
    ownership to per-attribute resolution (module docstring); ``None`` or an empty one keeps
    the ownership rules above.
    """
    if not source:
        raise ValueError("a directory source needs a name")
    _no_duplicates(users, groups)
    summary = SyncSummary(source=source)
    at = clock()
    with storage.unit_of_work() as uow:
        sync = _Sync(uow, source, takes_over, at, summary)
        sync.skip_conflicts = skip_conflicts
        sync.actor = actor
        sync.groups(groups)
        truth = source_of_truth if source_of_truth and source_of_truth.configured else None
        fresh = sync.fresh(users) if BULK_WRITES else set()
        if truth is not None:
            # A new user no source has claims about resolves to its own claims: the same
            # batches, plus this source's claims in one statement.
            fresh -= uow.source_claims.claimed(fresh)
            uow.source_claims.put_new(
                source, {u.id: _claims_of(u) for u in users if u.id in fresh}, at=at
            )
        events = sync.insert_fresh([u for u in users if u.id in fresh])
        pending: list[DomainEvent] = []
        for user in users:
            if user.id in fresh:
                pending += events[user.id]
                summary.added.append(user.id)
                continue
            uow.outbox.add(pending)  # the row path's order of events
            pending = []
            if truth is None:
                sync.user(user)
            else:
                sync.claimed_user(user, truth)
        uow.outbox.add(pending)
        if prune and truth is not None:
            sync.withdraw({u.id for u in users}, truth)
        else:
            listed = {u.id for u in users}
            stale_users = {u.id: u for u in uow.directory_users.list(source)} if prune else {}
            for user_id in sorted(set(gone) - listed - stale_users.keys()):
                if (found := uow.directory_users.get(user_id)) is not None:
                    stale_users[user_id] = found
            for stale in stale_users.values():
                if stale.id not in listed and stale.active and stale.source == source:
                    uow.directory_users.set_active(stale.id, False, at=at)
                    summary.disabled.append(stale.id)
                    sync.account_gone(stale, EventType.ACCOUNT_DELETED, "deleted_in_source")
        summary.groups_changed_users = [e.subject for e in sync.tracker.flush(at=at)]
        if summary.touched or actor != "system":
            uow.audit.record(actor, "directory.sync", source, "ok", summary.counts(), at=at)
    return summary


def _no_duplicates(users: Sequence[SourceUser], groups: Sequence[SourceGroup]) -> None:
    for what, values in (
        ("user id", [u.id for u in users]),
        ("username", [u.username for u in users]),
        ("group name", [g.name for g in groups]),
    ):
        seen: set[str] = set()
        for value in values:
            if value in seen:
                raise Conflict(f"{what} {value!r} is listed twice")
            seen.add(value)
