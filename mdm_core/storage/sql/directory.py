"""SQL implementation of the directory mirror stores (:mod:`mdm_core.storage.directory`)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from mdm_core.domain.errors import Conflict, NotFound
from mdm_core.storage.directory import DirectoryGroup, DirectoryUser, MemberKind, Membership
from mdm_core.storage.sql.encoding import as_utc
from mdm_core.storage.sql.read_ahead import EFFECTIVE_GROUPS_CTE, ReadAhead, group_names_key
from mdm_core.storage.sql.tables import (
    directory_groups,
    directory_memberships,
    directory_users,
    identity_links,
)

__all__ = ["SqlDirectoryUserStore", "SqlDirectoryGroupStore", "SqlMembershipStore"]

_CHUNK = 500  # ids per IN (...) list


def _user(row: Row[Any]) -> DirectoryUser:
    return DirectoryUser(
        id=row.id,
        username=row.username,
        active=bool(row.active),
        source=row.source,
        updated_at=as_utc(row.updated_at),
        email=row.email,
        display_name=row.display_name,
        external_id=row.external_id,
    )


def _group(row: Row[Any]) -> DirectoryGroup:
    return DirectoryGroup(
        id=row.id,
        name=row.name,
        source=row.source,
        updated_at=as_utc(row.updated_at),
        external_id=row.external_id,
    )


def _chunks(ids: Collection[str]) -> list[list[str]]:
    items = sorted(set(ids))
    return [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]


def _user_values(user: DirectoryUser) -> dict[str, object]:
    """The ``directory_users`` columns of ``user`` but its id (one mapping for every write)."""
    return {
        "username": user.username,
        "email": user.email,
        "display_name": user.display_name,
        "active": user.active,
        "source": user.source,
        "external_id": user.external_id,
        "updated_at": as_utc(user.updated_at),
    }


def _group_values(group: DirectoryGroup) -> dict[str, object]:
    """The ``directory_groups`` columns of ``group`` but its id."""
    return {
        "name": group.name,
        "source": group.source,
        "external_id": group.external_id,
        "updated_at": as_utc(group.updated_at),
    }


class SqlDirectoryUserStore:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def upsert(self, user: DirectoryUser) -> bool:
        existing = self.get(user.id)
        values = _user_values(user)
        if existing is not None and _same_user(existing, user):
            return False
        other = self.find_by_username(user.username)
        if other is not None and other.id != user.id:
            raise Conflict(f"username {user.username!r} belongs to another user")
        try:
            if existing is None:
                self.conn.execute(insert(directory_users).values(id=user.id, **values))
            else:
                self.conn.execute(
                    update(directory_users).where(directory_users.c.id == user.id).values(**values)
                )
            return True
        except IntegrityError as exc:  # a concurrent writer took the username
            raise Conflict(f"username {user.username!r} belongs to another user") from exc

    def get(self, user_id: str) -> DirectoryUser | None:
        row = self.conn.execute(
            select(directory_users).where(directory_users.c.id == user_id)
        ).one_or_none()
        return _user(row) if row is not None else None

    def find_by_username(self, username: str) -> DirectoryUser | None:
        row = self.conn.execute(
            select(directory_users).where(directory_users.c.username == username)
        ).one_or_none()
        return _user(row) if row is not None else None

    def taken(self, ids: Collection[str], usernames: Collection[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for chunk in _chunks(ids):
            rows = self.conn.execute(
                select(directory_users.c.id).where(directory_users.c.id.in_(chunk))
            )
            out.update((r.id, r.id) for r in rows)
        for chunk in _chunks(usernames):
            rows = self.conn.execute(
                select(directory_users.c.id, directory_users.c.username).where(
                    directory_users.c.username.in_(chunk)
                )
            )
            out.update((r.username, r.id) for r in rows)
        return out

    def insert_new(self, users: Sequence[DirectoryUser]) -> None:
        if not users:
            return
        rows = [{"id": u.id, **_user_values(u)} for u in users]
        try:
            self.conn.execute(insert(directory_users), rows)
        except IntegrityError as exc:  # a concurrent writer took an id or username
            raise Conflict("a new user's id or username belongs to another user") from exc

    def find_by_email(self, email: str) -> list[DirectoryUser]:
        if not email:
            return []
        rows = self.conn.execute(
            select(directory_users)
            .where(func.lower(directory_users.c.email) == email.lower())
            .order_by(directory_users.c.id)
        )
        return [_user(r) for r in rows]

    def set_active(self, user_id: str, active: bool, *, at: datetime) -> DirectoryUser:
        result = self.conn.execute(
            update(directory_users)
            .where(directory_users.c.id == user_id)
            .values(active=active, updated_at=as_utc(at))
        )
        if result.rowcount == 0:
            raise NotFound(f"unknown directory user {user_id!r}")
        user = self.get(user_id)
        assert user is not None
        return user

    def delete(self, user_id: str) -> bool:
        self.conn.execute(
            delete(directory_memberships).where(
                and_(
                    directory_memberships.c.member_kind == MemberKind.USER.value,
                    directory_memberships.c.member_id == user_id,
                )
            )
        )
        self.conn.execute(delete(identity_links).where(identity_links.c.user_id == user_id))
        result = self.conn.execute(delete(directory_users).where(directory_users.c.id == user_id))
        return result.rowcount > 0

    def list(self, source: str | None = None) -> list[DirectoryUser]:
        query = select(directory_users).order_by(directory_users.c.username)
        if source is not None:
            query = query.where(directory_users.c.source == source)
        return [_user(r) for r in self.conn.execute(query)]


def _same_user(a: DirectoryUser, b: DirectoryUser) -> bool:
    return (a.username, a.email, a.display_name, a.active, a.source, a.external_id) == (
        b.username,
        b.email,
        b.display_name,
        b.active,
        b.source,
        b.external_id,
    )


class SqlDirectoryGroupStore:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def upsert(self, group: DirectoryGroup) -> bool:
        existing = self.get(group.id)
        values = _group_values(group)
        if existing is not None and (existing.name, existing.source, existing.external_id) == (
            group.name,
            group.source,
            group.external_id,
        ):
            return False
        other = self.find_by_name(group.name)
        if other is not None and other.id != group.id:
            raise Conflict(f"group name {group.name!r} belongs to another group")
        try:
            if existing is None:
                self.conn.execute(insert(directory_groups).values(id=group.id, **values))
            else:
                self.conn.execute(
                    update(directory_groups)
                    .where(directory_groups.c.id == group.id)
                    .values(**values)
                )
            return True
        except IntegrityError as exc:  # a concurrent writer took the name
            raise Conflict(f"group name {group.name!r} belongs to another group") from exc

    def get(self, group_id: str) -> DirectoryGroup | None:
        row = self.conn.execute(
            select(directory_groups).where(directory_groups.c.id == group_id)
        ).one_or_none()
        return _group(row) if row is not None else None

    def names(self, group_ids: Collection[str] | None = None) -> dict[str, str]:
        query = select(directory_groups.c.id, directory_groups.c.name)
        if group_ids is None:
            return {r.id: r.name for r in self.conn.execute(query)}
        out: dict[str, str] = {}
        for chunk in _chunks(group_ids):
            for r in self.conn.execute(query.where(directory_groups.c.id.in_(chunk))):
                out[r.id] = r.name
        return out

    def find_by_name(self, name: str) -> DirectoryGroup | None:
        row = self.conn.execute(
            select(directory_groups).where(directory_groups.c.name == name)
        ).one_or_none()
        return _group(row) if row is not None else None

    def insert_new(self, groups: Sequence[DirectoryGroup]) -> None:
        if not groups:
            return
        rows = [{"id": g.id, **_group_values(g)} for g in groups]
        try:
            self.conn.execute(insert(directory_groups), rows)
        except IntegrityError as exc:  # a concurrent writer took an id or name
            raise Conflict("a new group's id or name belongs to another group") from exc

    def delete(self, group_id: str) -> bool:
        self.conn.execute(
            delete(directory_memberships).where(
                or_(
                    directory_memberships.c.group_id == group_id,
                    and_(
                        directory_memberships.c.member_kind == MemberKind.GROUP.value,
                        directory_memberships.c.member_id == group_id,
                    ),
                )
            )
        )
        result = self.conn.execute(
            delete(directory_groups).where(directory_groups.c.id == group_id)
        )
        return result.rowcount > 0

    def list(self, source: str | None = None) -> list[DirectoryGroup]:
        query = select(directory_groups).order_by(directory_groups.c.name)
        if source is not None:
            query = query.where(directory_groups.c.source == source)
        return [_group(r) for r in self.conn.execute(query)]


#: One statement, both dialects: the recursive CTE and the names of the groups it reached.
_EFFECTIVE_GROUP_NAMES = text(
    "WITH RECURSIVE "
    + EFFECTIVE_GROUPS_CTE.format(user=":user_id")
    + "SELECT name FROM directory_groups WHERE id IN (SELECT id FROM grp)"
)
_PARENTS_OF_ONE = select(directory_memberships).where(
    directory_memberships.c.member_kind == bindparam("kind"),
    directory_memberships.c.member_id == bindparam("member"),
)

#: Nested groups are followed this deep (as :data:`mdm_core.directory.mirror.MAX_NESTING`).
MAX_NESTING = 64


class SqlMembershipStore:
    def __init__(self, conn: Connection, dialect: str, read_ahead: ReadAhead | None = None) -> None:
        self.conn = conn
        self.dialect = dialect
        self.read_ahead = read_ahead

    def _forget_read_ahead(self, membership: Membership) -> None:
        if self.read_ahead is not None and membership.member_kind is MemberKind.USER:
            self.read_ahead.drop(group_names_key(membership.member_id))
        elif self.read_ahead is not None:  # a nested group changed: any user may be affected
            self.read_ahead.clear()

    def effective_group_names(self, user_id: str) -> frozenset[str]:
        if self.read_ahead is not None:  # read by this unit of work's check-in statement
            ahead = self.read_ahead.take(group_names_key(user_id))
            if isinstance(ahead, frozenset):
                return ahead
        rows = self.conn.execute(
            _EFFECTIVE_GROUP_NAMES, {"user_id": user_id, "max_nesting": MAX_NESTING}
        )
        return frozenset(str(r.name) for r in rows)

    def _exists(self, m: Membership) -> bool:
        row = self.conn.execute(
            select(directory_memberships.c.group_id).where(
                directory_memberships.c.group_id == m.group_id,
                directory_memberships.c.member_id == m.member_id,
                directory_memberships.c.member_kind == m.member_kind.value,
            )
        ).first()
        return row is not None

    def add(self, membership: Membership) -> bool:
        self._forget_read_ahead(membership)
        group = self.conn.execute(
            select(directory_groups.c.id).where(directory_groups.c.id == membership.group_id)
        ).first()
        if group is None:
            raise NotFound(f"unknown directory group {membership.group_id!r}")
        if self._exists(membership):
            return False
        self.conn.execute(
            insert(directory_memberships).values(
                group_id=membership.group_id,
                member_id=membership.member_id,
                member_kind=membership.member_kind.value,
            )
        )
        return True

    def pairs(self, kind: MemberKind) -> list[tuple[str, str]]:
        rows = self.conn.execute(
            select(directory_memberships.c.member_id, directory_memberships.c.group_id).where(
                directory_memberships.c.member_kind == kind.value
            )
        )
        return [(r[0], r[1]) for r in rows]

    def add_new(self, memberships: Sequence[Membership]) -> None:
        if not memberships:
            return
        for m in memberships:
            self._forget_read_ahead(m)
        self.conn.execute(
            insert(directory_memberships),
            [
                {
                    "group_id": m.group_id,
                    "member_id": m.member_id,
                    "member_kind": m.member_kind.value,
                }
                for m in memberships
            ],
        )

    def remove(self, membership: Membership) -> bool:
        self._forget_read_ahead(membership)
        result = self.conn.execute(
            delete(directory_memberships).where(
                directory_memberships.c.group_id == membership.group_id,
                directory_memberships.c.member_id == membership.member_id,
                directory_memberships.c.member_kind == membership.member_kind.value,
            )
        )
        return result.rowcount > 0

    def members(self, group_ids: Collection[str]) -> list[Membership]:
        out: list[Membership] = []
        for chunk in _chunks(group_ids):
            rows = self.conn.execute(
                select(directory_memberships).where(directory_memberships.c.group_id.in_(chunk))
            )
            out.extend(Membership(r.group_id, r.member_id, MemberKind(r.member_kind)) for r in rows)
        return sorted(out)

    def parents(self, kind: MemberKind, member_ids: Collection[str]) -> list[Membership]:
        if len(member_ids) == 1:  # one user (a SCIM answer, a check-in): the prebuilt statement
            (only,) = member_ids
            rows = self.conn.execute(_PARENTS_OF_ONE, {"kind": kind.value, "member": only})
            return sorted(Membership(r.group_id, r.member_id, kind) for r in rows)
        out: list[Membership] = []
        for chunk in _chunks(member_ids):
            rows = self.conn.execute(
                select(directory_memberships).where(
                    directory_memberships.c.member_kind == kind.value,
                    directory_memberships.c.member_id.in_(chunk),
                )
            )
            out.extend(Membership(r.group_id, r.member_id, MemberKind(r.member_kind)) for r in rows)
        return sorted(out)
