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

from mdm_core.bus.events import EventType
from mdm_core.directory.accounts import account_event
from mdm_core.directory.mirror import GroupChangeTracker, add_membership, remove_membership
from mdm_core.directory.precedence import Override, SourceOfTruth
from mdm_core.domain.device_lifecycle import end_user_access
from mdm_core.domain.errors import Conflict
from mdm_core.storage.directory import DirectoryGroup, DirectoryUser, MemberKind, Membership
from mdm_core.storage.uow import Storage, UnitOfWork

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
        self.tracker = GroupChangeTracker(uow, cause=f"directory.sync:{source}")

    def group_id(self, name: str, wanted_id: str | None = None) -> str:
        """The id of the group called ``name``, created for this source when unknown."""
        if name in self.group_ids:
            return self.group_ids[name]
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
                )
            ]
        )
    groups = set_groups(user_id, tuple(resolved.get("groups", ())))
    return changed or groups, overrides


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
        for group in groups:
            sync.group(group)
        truth = source_of_truth if source_of_truth and source_of_truth.configured else None
        for user in users:
            if truth is None:
                sync.user(user)
            else:
                sync.claimed_user(user, truth)
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
