"""LDAP/AD -> directory mirror: full and incremental syncs through ``sync_source``.

**Full sync** reads every user and group (paged), builds each user's and group's *direct*
group list from the groups' ``member`` values, compares that with the mirror (a few bulk
reads) and hands :func:`mdm_core.directory.sync.sync_source` only what differs — new or
changed users and groups, and, as ``gone``, the source's users LDAP no longer returns (a
deletion is only ever detected here: an incremental read cannot see what is not there). A
second full sync of an unchanged directory writes nothing. Groups that disappeared are
removed from the mirror. The cursor becomes the highest change value read.

**Incremental sync** reads only entries whose change attribute (AD ``uSNChanged``, OpenLDAP
``modifyTimestamp``) is at or past the stored cursor, resolves member DNs through the stored
DN -> id map (:class:`mdm_core.storage.sync_state.SourceEntryStore`), recomputes the direct
groups of every user or group a changed group gained or lost, and syncs those. Without a
cursor it runs a full sync.

The stable id is the binary ``objectGUID`` (AD) or ``entryUUID`` (OpenLDAP), never the DN:
a renamed or moved entry keeps its mirror record and only its stored DN changes. A disabled
account (AD ``userAccountControl`` bit 2, OpenLDAP ``pwdAccountLockedTime``, or the configured
attribute) becomes inactive; ``sync_source`` revokes its credentials and writes
``directory.account_disabled`` (``directory.account_deleted`` for a gone one) to the outbox in
the same unit of work.

Large syncs are written in chunks of users (one unit of work each; groups go with the first),
and the DN map and cursor are stored after the last chunk: a sync that fails midway leaves the
cursor where it was, so the next run repeats the work (every step is idempotent).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, TypeVar

from idp_connectors.ldap.client import LdapSession, connect
from idp_connectors.ldap.config import LdapSettings
from idp_connectors.ldap.errors import LdapUnsupported
from idp_connectors.ldap.filters import all_of, at_least, equals
from idp_connectors.ldap.nested import in_chain_filter, supports_in_chain, transitive_users
from idp_connectors.ldap.schema import EntryError, LdapGroup, LdapUser, Mapper, resolve
from mdm_core.directory.precedence import SourceOfTruth
from mdm_core.directory.sync import SourceGroup, SourceUser, SyncSummary, sync_source
from mdm_core.storage.directory import DirectoryGroup, DirectoryUser, MemberKind
from mdm_core.storage.sync_state import SourceEntry
from mdm_core.storage.uow import Storage, UnitOfWork

__all__ = ["LdapSync", "LdapSyncResult", "Progress", "Mode"]

Mode = Literal["full", "incremental"]
_T = TypeVar("_T", LdapUser, LdapGroup)
#: ``progress(phase, advance, total)``: phase is "users", "groups" or "write".
Progress = Callable[[str, int, int | None], None]


def _no_progress(phase: str, advance: int, total: int | None) -> None:
    return None


@dataclass
class LdapSyncResult:
    """What one LDAP sync read and changed (ids are mirror user ids)."""

    mode: Mode
    source: str
    users_read: int = 0
    groups_read: int = 0
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    groups_added: int = 0
    groups_changed: int = 0
    groups_deleted: int = 0
    skipped: list[str] = field(default_factory=list)
    cursor: str | None = None
    nested: str | None = None  # in_chain | recursive, when a required_group scopes the sync
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        return {
            "users_read": self.users_read,
            "groups_read": self.groups_read,
            "added": len(self.added),
            "changed": len(self.changed),
            "disabled": len(self.disabled),
            "deleted": len(self.deleted),
            "groups_added": self.groups_added,
            "groups_changed": self.groups_changed,
            "groups_deleted": self.groups_deleted,
            "skipped": len(self.skipped),
        }

    def absorb(self, summary: SyncSummary, fresh: Collection[str] = ()) -> None:
        """Add one ``sync_source`` call's counts (``fresh``: groups created just before)."""
        self.added += summary.added
        self.changed += summary.changed
        self.groups_added += len(summary.groups_added)
        self.groups_changed += len([g for g in summary.groups_changed if g not in fresh])
        self.skipped += summary.skipped


@dataclass
class _Read:
    users: list[LdapUser]
    groups: list[LdapGroup]
    highest: str | None


class LdapSync:
    """One configured LDAP source; :meth:`run` does a full or an incremental sync."""

    def __init__(
        self,
        settings: LdapSettings,
        storage: Storage,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        progress: Progress | None = None,
        chunk_size: int = 5000,
        session_factory: Callable[[LdapSettings], LdapSession] = connect,
        actor: str = "system",
        source_of_truth: SourceOfTruth | None = None,
    ) -> None:
        if storage is None:
            raise ValueError("LdapSync needs a storage")
        self.settings = settings
        self.storage = storage
        self.clock = clock
        self.progress = progress or _no_progress
        self.chunk_size = chunk_size
        self.session_factory = session_factory
        self.actor = actor  # audited with each write (an admin running the CLI, the scheduler)
        self.schema = resolve(settings)
        self.mapper = Mapper(self.schema)
        self.source = settings.source

        # --- entry points -----------------------------------------------------------------------
        #: The configured per-attribute precedence (``directory.source_of_truth``): the
        #: sync's writes follow it; unset, the one-owner-per-record rules apply.
        self.source_of_truth = source_of_truth

    def run(self, *, full: bool = False) -> LdapSyncResult:
        """A full sync when asked or when no cursor is stored, else an incremental one."""
        started = time.perf_counter()
        with self.storage.unit_of_work() as uow:
            stored = uow.sync_cursors.get(self.source)
        with self.session_factory(self.settings) as session:
            if full or stored is None or stored.cursor is None:
                result = self._full(session)
            else:
                result = self._incremental(session, stored.cursor)
        result.seconds = time.perf_counter() - started
        return result

    def find_users(self, username: str) -> list[LdapUser]:
        """Users whose username attribute equals ``username`` (escaped: never a pattern)."""
        with self.session_factory(self.settings) as session:
            flt = all_of(self.schema.user_filter, equals(self.schema.username, username))
            return self._users(session, flt, [])

    # --- reading ----------------------------------------------------------------------------

    def _users(self, session: LdapSession, flt: str, skipped: list[str]) -> list[LdapUser]:
        out: list[LdapUser] = []
        base = self.settings.user_base or self.settings.base_dn
        read = 0
        for dn, raw in session.paged(base, flt, self.schema.user_attributes()):
            read += 1
            try:
                out.append(self.mapper.user(dn, raw))
            except (EntryError, UnicodeDecodeError) as exc:
                skipped.append(f"{dn} ({exc})")
            if read % 1000 == 0:  # entries read, mapped or skipped: each counted once
                self.progress("users", 1000, None)
        self.progress("users", read % 1000, read)
        return out

    def _groups(self, session: LdapSession, flt: str, skipped: list[str]) -> list[LdapGroup]:
        out: list[LdapGroup] = []
        base = self.settings.group_base or self.settings.base_dn
        for dn, raw in session.paged(base, flt, self.schema.group_attributes()):
            try:
                out.append(self.mapper.group(dn, raw))
            except (EntryError, UnicodeDecodeError) as exc:
                skipped.append(f"{dn} ({exc})")
        self.progress("groups", len(out), len(out))
        return out

    def _nested_mode(self, session: LdapSession) -> str:
        wanted = self.settings.nested
        if wanted == "recursive":
            return "recursive"
        supported = supports_in_chain(session)
        if wanted == "in_chain" and not supported:
            raise LdapUnsupported(
                f"{self.settings.url} does not publish the in-chain matching rule "
                "(1.2.840.113556.1.4.1941); set ldap.nested to auto or recursive"
            )
        return "in_chain" if supported else "recursive"

    def _highest(self, values: Iterable[str | None], start: str | None = None) -> str | None:
        numeric = self._numeric()
        best = start
        for value in values:
            if value is None:
                continue
            if best is None:
                best = value
            elif numeric:
                if value.isdigit() and (not best.isdigit() or int(value) > int(best)):
                    best = value
            elif value > best:
                best = value
        return best

    def _read(self, session: LdapSession, extra: str | None, result: LdapSyncResult) -> _Read:
        scope = self.settings.required_group
        user_filter = self.schema.user_filter
        if scope is not None:
            result.nested = self._nested_mode(session)
            if result.nested == "in_chain":
                user_filter = all_of(user_filter, in_chain_filter(scope))
        groups = self._groups(
            session, all_of(self.schema.group_filter, extra or ""), result.skipped
        )
        users = self._users(session, all_of(user_filter, extra or ""), result.skipped)
        users = _unique(users, lambda u: u.username.lower(), result.skipped, "username")
        groups = _unique(groups, lambda g: g.name, result.skipped, "group name")
        highest = self._highest([*(u.change for u in users), *(g.change for g in groups)])
        result.users_read, result.groups_read = len(users), len(groups)
        return _Read(users, groups, highest)

    # --- full -------------------------------------------------------------------------------

    def _full(self, session: LdapSession) -> LdapSyncResult:
        result = LdapSyncResult(mode="full", source=self.source)
        read = self._read(session, None, result)
        groups_by_dn = {g.dn: g for g in read.groups}
        users = read.users
        if self.settings.required_group is not None and result.nested == "recursive":
            allowed = transitive_users(
                groups_by_dn, self.settings.required_group, {u.dn for u in users}
            )
            users = [u for u in users if u.dn in allowed]
        user_by_dn = {u.dn: u for u in users}
        user_groups: dict[str, list[str]] = defaultdict(list)
        group_parents: dict[str, list[str]] = defaultdict(list)
        for group in read.groups:
            for member in group.members:
                if member in user_by_dn:
                    user_groups[member].append(group.name)
                elif member in groups_by_dn:
                    group_parents[member].append(group.name)
        with self.storage.unit_of_work() as uow:
            mirror = _MirrorView.load(uow, self.source)
        source_groups = [
            SourceGroup(name=g.name, id=g.id, groups=tuple(sorted(group_parents.get(g.dn, ()))))
            for g in read.groups
        ]
        changed_groups = [g for g in source_groups if mirror.group_differs(g)]
        source_users = [_source_user(u, user_groups.get(u.dn, ())) for u in users]
        changed_users = [u for u in source_users if mirror.user_differs(u)]
        result.disabled = [u.id for u in changed_users if mirror.disables(u)]
        seen = {u.id for u in users}
        gone = sorted(i for i, u in mirror.users.items() if i not in seen and u.active)
        result.deleted = list(gone)
        self._write(changed_users, changed_groups, gone, result)
        seen_groups = {g.name for g in read.groups}
        with self.storage.unit_of_work() as uow:
            for name, stale in mirror.groups.items():
                if name not in seen_groups and uow.directory_groups.delete(stale.id):
                    result.groups_deleted += 1
            self._remember(uow, users, read.groups, mirror.entries, full=True)
            gone_ids = set(mirror.entries) - seen - {g.id for g in read.groups}
            uow.source_entries.remove(self.source, gone_ids)
            uow.sync_cursors.put(self.source, read.highest, at=self.clock(), full=True)
            result.cursor = read.highest
            self._audit(uow, result)
        return result

    def _write(
        self,
        users: Sequence[SourceUser],
        groups: Sequence[SourceGroup],
        gone: Collection[str],
        result: LdapSyncResult,
    ) -> None:
        total = len(users)
        self.progress("write", 0, total)
        with self.storage.unit_of_work() as uow:
            known = set(uow.directory_groups.names().values())
            new = [g for g in groups if g.name not in known]
        if new:  # created first, each under its own stable id, before any nesting names it
            bare = [SourceGroup(name=g.name, id=g.id) for g in new]
            result.absorb(
                sync_source(
                    self.storage,
                    self.source,
                    [],
                    bare,
                    clock=self.clock,
                    source_of_truth=self.source_of_truth,
                )
            )
        fresh = {g.name for g in new}
        chunks = [users[i : i + self.chunk_size] for i in range(0, total, self.chunk_size)] or [[]]
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            if not (chunk or (index == 0 and groups) or (last and gone)):
                continue
            summary = sync_source(
                self.storage,
                self.source,
                chunk,
                groups if index == 0 else (),
                gone=gone if last else (),
                skip_conflicts=True,
                actor=self.actor,
                clock=self.clock,
                source_of_truth=self.source_of_truth,
            )
            result.absorb(summary, fresh)
            self.progress("write", len(chunk), total)

    def _remember(
        self,
        uow: UnitOfWork,
        users: Iterable[LdapUser],
        groups: Iterable[LdapGroup],
        known: dict[str, SourceEntry],
        *,
        full: bool,
    ) -> None:
        fresh = [SourceEntry(u.id, MemberKind.USER, u.dn) for u in users]
        fresh += [SourceEntry(g.id, MemberKind.GROUP, g.dn) for g in groups]
        uow.source_entries.put(self.source, [e for e in fresh if known.get(e.entry_id) != e])

    # --- incremental ------------------------------------------------------------------------

    def _incremental(self, session: LdapSession, cursor: str) -> LdapSyncResult:
        result = LdapSyncResult(mode="incremental", source=self.source)
        read = self._read(session, self._since(cursor), result)
        with self.storage.unit_of_work() as uow:
            entries = uow.source_entries.entries(self.source)
            plan = _IncrementalPlan(uow, self.source, entries, read)
            if self.settings.required_group is not None and result.nested != "in_chain":
                plan.only_known_users()  # a new user's scope is decided by the next full sync
            users, groups = plan.build()
            mirror_users = plan.mirror_users
        changed_users = [u for u in users if _differs(mirror_users.get(u.id), u, plan)]
        result.disabled = [
            u.id
            for u in changed_users
            if (m := mirror_users.get(u.id)) and m.active and not u.active
        ]
        self._write(changed_users, groups, (), result)
        with self.storage.unit_of_work() as uow:
            self._remember(uow, read.users, read.groups, entries, full=False)
            result.cursor = self._highest([read.highest], cursor)
            uow.sync_cursors.put(self.source, result.cursor, at=self.clock())
            self._audit(uow, result)
        return result

    def _audit(self, uow: UnitOfWork, result: LdapSyncResult) -> None:
        """``directory.ldap_sync`` with the counts: always for an admin, else on a change."""
        counts = result.counts()
        changed = any(v for k, v in counts.items() if k not in {"users_read", "groups_read"})
        if changed or self.actor.startswith("admin:"):
            detail = {"mode": result.mode, **counts, "cursor": result.cursor}
            uow.audit.record(
                self.actor, "directory.ldap_sync", self.source, "ok", detail, at=self.clock()
            )

    def _numeric(self) -> bool:
        return self.schema.change.lower() == "usnchanged"

    def _since(self, cursor: str) -> str:
        """Entries changed after ``cursor``: ``uSNChanged`` and ``entryCSN`` are unique per
        change (strictly greater); ``modifyTimestamp`` has one-second steps, so the cursor's
        own second is read again (harmless: the sync is idempotent)."""
        attr = self.schema.change
        if self._numeric() and cursor.isdigit():
            return at_least(attr, str(int(cursor) + 1))
        if attr.lower() == "entrycsn":
            return all_of(at_least(attr, cursor), f"(!{equals(attr, cursor)})")
        return at_least(attr, cursor)


def _unique(items: list[_T], key: Callable[[_T], str], skipped: list[str], what: str) -> list[_T]:
    seen: set[str] = set()
    out: list[_T] = []
    for item in items:
        k = key(item)
        if k in seen:
            skipped.append(f"{getattr(item, 'dn', k)} (duplicate {what} {k!r})")
            continue
        seen.add(k)
        out.append(item)
    return out


def _source_user(user: LdapUser, groups: Iterable[str]) -> SourceUser:
    return SourceUser(
        id=user.id,
        username=user.username,
        email=user.email,
        display_name=user.display_name,
        active=not user.disabled,
        groups=tuple(sorted(set(groups))),
    )


@dataclass
class _MirrorView:
    """The mirror's records of one source, read in bulk for the full sync's diff."""

    users: dict[str, DirectoryUser]
    user_groups: dict[str, frozenset[str]]
    groups: dict[str, DirectoryGroup]  # by name
    group_parents: dict[str, frozenset[str]]  # group name -> parent names
    entries: dict[str, SourceEntry]

    @classmethod
    def load(cls, uow: UnitOfWork, source: str) -> _MirrorView:
        users = {u.id: u for u in uow.directory_users.list(source)}
        groups = uow.directory_groups.list(source)
        names = uow.directory_groups.names()
        user_groups: dict[str, set[str]] = defaultdict(set)
        for member_id, group_id in uow.memberships.pairs(MemberKind.USER):  # one statement
            if member_id in users:
                user_groups[member_id].add(names.get(group_id, group_id))
        by_id = {g.id: g for g in groups}
        group_parents: dict[str, set[str]] = defaultdict(set)
        for member_id, group_id in uow.memberships.pairs(MemberKind.GROUP):
            if member_id in by_id:
                group_parents[by_id[member_id].name].add(names.get(group_id, group_id))
        return cls(
            users=users,
            user_groups={k: frozenset(v) for k, v in user_groups.items()},
            groups={g.name: g for g in groups},
            group_parents={k: frozenset(v) for k, v in group_parents.items()},
            entries=uow.source_entries.entries(source),
        )

    def user_differs(self, user: SourceUser) -> bool:
        known = self.users.get(user.id)
        if known is None:
            return True
        return (
            known.username != user.username
            or known.email != user.email
            or known.display_name != user.display_name
            or known.active != user.active
            or self.user_groups.get(user.id, frozenset()) != frozenset(user.groups)
        )

    def group_differs(self, group: SourceGroup) -> bool:
        if group.name not in self.groups:
            return True
        return self.group_parents.get(group.name, frozenset()) != frozenset(group.groups)

    def disables(self, user: SourceUser) -> bool:
        known = self.users.get(user.id)
        return known is not None and known.active and not user.active


class _IncrementalPlan:
    """Which users and groups an incremental read affects, with their new direct groups."""

    def __init__(
        self, uow: UnitOfWork, source: str, entries: dict[str, SourceEntry], read: _Read
    ) -> None:
        self.uow, self.source, self.read = uow, source, read
        self.by_dn: dict[str, SourceEntry] = {e.key: e for e in entries.values()}
        for u in read.users:
            self.by_dn[u.dn] = SourceEntry(u.id, MemberKind.USER, u.dn)
        for g in read.groups:
            self.by_dn[g.dn] = SourceEntry(g.id, MemberKind.GROUP, g.dn)
        self.mirror_users: dict[str, DirectoryUser] = {}
        self.restrict_to_known = False
        self.current_groups: dict[str, frozenset[str]] = {}

    def only_known_users(self) -> None:
        self.restrict_to_known = True

    def build(self) -> tuple[list[SourceUser], list[SourceGroup]]:
        uow = self.uow
        # Direct members each changed group has now (resolved to ids) and had before.
        new_members: dict[str, set[str]] = {}
        affected_users: set[str] = {u.id for u in self.read.users}
        affected_groups: dict[str, str] = {}  # mirror group id -> name
        changed_names: set[str] = set()
        for group in self.read.groups:
            changed_names.add(group.name)
            resolved = {self.by_dn[m].entry_id for m in group.members if m in self.by_dn}
            new_members[group.name] = resolved
            existing = uow.directory_groups.find_by_name(group.name)
            old = uow.memberships.members([existing.id]) if existing is not None else []
            for m in old:
                if m.member_kind is MemberKind.USER:
                    affected_users.add(m.member_id)
                else:
                    affected_groups.setdefault(m.member_id, "")
            for member in group.members:
                entry = self.by_dn.get(member)
                if entry is None:
                    continue
                if entry.kind is MemberKind.USER:
                    affected_users.add(entry.entry_id)
                else:
                    affected_groups.setdefault(entry.entry_id, "")
        for group in self.read.groups:
            affected_groups[group.id] = group.name
        names = uow.directory_groups.names()
        for gid in list(affected_groups):
            affected_groups[gid] = affected_groups[gid] or names.get(gid, "")
        # Users: the mirror's record and direct groups, adjusted by the changed groups.
        for uid in affected_users:
            found = uow.directory_users.get(uid)
            if found is not None:
                self.mirror_users[uid] = found
        user_groups = self._parents(MemberKind.USER, affected_users, names)
        group_parents = self._parents(MemberKind.GROUP, set(affected_groups), names)
        read_users = {u.id: u for u in self.read.users}
        users: list[SourceUser] = []
        for uid in sorted(affected_users):
            groups = _adjust(user_groups.get(uid, set()), uid, new_members)
            fresh = read_users.get(uid)
            known = self.mirror_users.get(uid)
            if fresh is not None and (known is not None or not self.restrict_to_known):
                users.append(_source_user(fresh, groups))
            elif known is not None and known.source == self.source:
                users.append(
                    SourceUser(
                        id=known.id,
                        username=known.username,
                        email=known.email,
                        display_name=known.display_name,
                        active=known.active,
                        groups=tuple(sorted(groups)),
                    )
                )
            self.current_groups[uid] = frozenset(user_groups.get(uid, set()))
        out_groups: list[SourceGroup] = []
        for gid, name in sorted(affected_groups.items()):
            if not name:
                continue
            parents = _adjust(group_parents.get(gid, set()), gid, new_members)
            if name in changed_names or parents != group_parents.get(gid, set()):
                out_groups.append(SourceGroup(name=name, id=gid, groups=tuple(sorted(parents))))
        return users, out_groups

    def _parents(
        self, kind: MemberKind, ids: Collection[str], names: dict[str, str]
    ) -> dict[str, set[str]]:
        out: dict[str, set[str]] = defaultdict(set)
        for m in self.uow.memberships.parents(kind, list(ids)):
            out[m.member_id].add(names.get(m.group_id, m.group_id))
        return out


def _adjust(current: set[str], member_id: str, new_members: dict[str, set[str]]) -> set[str]:
    """``current`` direct group names, with every changed group's verdict applied."""
    groups = set(current)
    for name, members in new_members.items():
        if member_id in members:
            groups.add(name)
        else:
            groups.discard(name)
    return groups


def _differs(known: DirectoryUser | None, user: SourceUser, plan: _IncrementalPlan) -> bool:
    if known is None:
        return True
    return (
        known.username != user.username
        or known.email != user.email
        or known.display_name != user.display_name
        or known.active != user.active
        or plan.current_groups.get(user.id, frozenset()) != frozenset(user.groups)
    )
