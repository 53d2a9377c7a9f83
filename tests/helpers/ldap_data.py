"""Generated AD-like and OpenLDAP directories for the LDAP sync tests and benchmark.

:class:`DirectoryData` builds users and groups under one OU of either flavor, as
``(dn, attributes)`` pairs that go to ``slapadd`` (:meth:`DirectoryData.ldif`) or to a running
slapd (:meth:`DirectoryData.add_to`). Groups nest at least :data:`DEPTH` deep (a chain
``level-0 ⊃ level-1 ⊃ ...``), two groups form a nesting cycle, every ``disabled_every``-th user
is disabled (AD: ``userAccountControl`` 514; OpenLDAP: ``pwdAccountLockedTime``), and a few
users have DNs that need escaping (commas, parentheses, ``*``, a backslash, ``#``).

:class:`Writer` modifies a running directory the way the real server would: for the AD
flavor every write also sets ``uSNChanged`` to the next change number (slapd does not keep it).
"""

from __future__ import annotations

import base64
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

import ldap3
from ldap3.utils.dn import escape_rdn

from tests.slapd import AD_BASE, ADMIN_PASSWORD, OL_BASE

__all__ = ["DirectoryData", "DataUser", "DataGroup", "Writer", "DEPTH", "TRICKY_NAMES"]

DEPTH = 4

#: Common names that need escaping in a DN and in a filter.
TRICKY_NAMES = ("Smith, John (IT)", "Star * Wars", "Back\\slash", "#hash", "Paren (x)")


@dataclass
class DataUser:
    dn: str
    guid: uuid.UUID
    username: str
    disabled: bool


@dataclass
class DataGroup:
    dn: str
    guid: uuid.UUID
    name: str
    members: list[str] = field(default_factory=list)  # DNs


@dataclass
class DirectoryData:
    flavor: str  # "ad" | "openldap"
    ou: str
    users: int = 50
    groups: int = 12
    disabled_every: int = 10
    tricky: bool = True
    load_uuids: bool = True  # OpenLDAP: set entryUUID (slapadd only); else read them back
    usn: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))
    people: list[DataUser] = field(default_factory=list)
    teams: list[DataGroup] = field(default_factory=list)

    @property
    def suffix(self) -> str:
        return AD_BASE if self.flavor == "ad" else OL_BASE

    @property
    def base(self) -> str:
        return f"ou={self.ou},{self.suffix}"

    def __post_init__(self) -> None:
        names = [f"User {i:05d}" for i in range(self.users)]
        if self.tricky:
            names[: len(TRICKY_NAMES)] = TRICKY_NAMES
        for i, cn in enumerate(names):
            rdn = f"cn={escape_rdn(cn)}" if self.flavor == "ad" else f"uid=user{i:05d}"
            self.people.append(
                DataUser(
                    dn=f"{rdn},ou=users,{self.base}",
                    guid=uuid.uuid4(),
                    username=f"user{i:05d}",
                    disabled=i % self.disabled_every == self.disabled_every - 1,
                )
            )
        for j in range(self.groups):
            name = f"{self.ou}-g{j:04d}"
            self.teams.append(DataGroup(f"cn={name},ou=groups,{self.base}", uuid.uuid4(), name))
        # users: each in one group (round robin); groups 0..DEPTH-1 form a chain (i contains
        # i+1); the last two groups form a cycle; the rest hang under group 0.
        for i, person in enumerate(self.people):
            self.teams[i % self.groups].members.append(person.dn)
        for j in range(DEPTH - 1):
            self.teams[j].members.append(self.teams[j + 1].dn)
        a, b = self.teams[-2], self.teams[-1]
        a.members.append(b.dn)
        b.members.append(a.dn)
        for j in range(DEPTH, self.groups - 2):
            self.teams[j % DEPTH].members.append(self.teams[j].dn)

    # --- entries ------------------------------------------------------------------------

    def user_attrs(self, user: DataUser, index: int) -> dict[str, Any]:
        cn = user.dn.split(",ou=users")[0].split("=", 1)[1]
        display = ldap3.utils.dn.parse_dn(user.dn)[0][1] if self.flavor == "ad" else user.username
        common = {"cn": display, "sn": f"n{index}", "mail": f"{user.username}@{self.ou}.test"}
        if self.flavor == "ad":
            return {
                **common,
                "objectClass": ["user"],
                "sAMAccountName": user.username,
                "displayName": display,
                "objectGUID": user.guid.bytes_le,
                "userAccountControl": "514" if user.disabled else "512",
                "uSNChanged": str(next(self.usn)),
            }
        attrs: dict[str, Any] = {**common, "objectClass": ["inetOrgPerson"], "uid": user.username}
        if self.load_uuids:  # slapadd takes operational attributes; an add over LDAP does not
            attrs["entryUUID"] = str(user.guid)
        attrs["cn"] = cn if cn else user.username
        if user.disabled:
            attrs["pwdAccountLockedTime"] = "000001010000Z"
        return attrs

    def group_attrs(self, group: DataGroup) -> dict[str, Any]:
        if self.flavor == "ad":
            attrs: dict[str, Any] = {
                "objectClass": ["group"],
                "cn": group.name,
                "objectGUID": group.guid.bytes_le,
                "uSNChanged": str(next(self.usn)),
            }
            if group.members:
                attrs["member"] = list(group.members)
            return attrs
        attrs = {
            "objectClass": ["groupOfNames"],
            "cn": group.name,
            "member": list(group.members) or [f"cn=nobody,{self.base}"],
        }
        if self.load_uuids:
            attrs["entryUUID"] = str(group.guid)
        return attrs

    def entries(self) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = [
            (self.base, {"objectClass": ["organizationalUnit"], "ou": self.ou}),
            (f"ou=users,{self.base}", {"objectClass": ["organizationalUnit"], "ou": "users"}),
            (f"ou=groups,{self.base}", {"objectClass": ["organizationalUnit"], "ou": "groups"}),
        ]
        out += [(u.dn, self.user_attrs(u, i)) for i, u in enumerate(self.people)]
        out += [(g.dn, self.group_attrs(g)) for g in self.teams]
        return out

    def ldif(self) -> str:
        chunks = []
        for dn, attrs in self.entries():
            lines = [_ldif_line("dn", dn)]
            for name, value in attrs.items():
                for v in value if isinstance(value, list) else [value]:
                    lines.append(_ldif_line(name, v))
            chunks.append("\n".join(lines) + "\n")
        return "\n".join(chunks)

    def add_to(self, conn: ldap3.Connection) -> None:
        """Add every entry over LDAP; OpenLDAP ids (entryUUID) are read back from the server."""
        self.load_uuids = False
        for dn, attrs in self.entries():
            attrs = dict(attrs)
            classes = attrs.pop("objectClass")
            if not conn.add(dn, classes, attrs):
                raise RuntimeError(f"add {dn}: {conn.result}")
        if self.flavor != "ad":
            for item in [*self.people, *self.teams]:
                conn.search(item.dn, "(objectClass=*)", ldap3.BASE, attributes=["entryUUID"])
                item.guid = uuid.UUID(conn.response[0]["raw_attributes"]["entryUUID"][0].decode())

    # --- expectations -------------------------------------------------------------------

    def user_by_name(self, username: str) -> DataUser:
        return next(u for u in self.people if u.username == username)

    def direct_groups(self, dn: str) -> set[str]:
        return {g.name for g in self.teams if dn in g.members}

    def effective_groups(self, dn: str) -> set[str]:
        found: set[str] = set()
        frontier = {g.dn for g in self.teams if dn in g.members}
        by_dn = {g.dn: g for g in self.teams}
        while frontier:
            found |= {by_dn[d].name for d in frontier}
            frontier = {g.dn for g in self.teams if set(g.members) & frontier} - {
                by_dn[n].dn for n in by_dn if by_dn[n].name in found
            }
        return found


def _ldif_line(name: str, value: str | bytes) -> str:
    if isinstance(value, bytes) or not value.isascii() or value[:1] in {" ", ":", "<"}:
        raw = value if isinstance(value, bytes) else value.encode()
        return f"{name}:: {base64.b64encode(raw).decode()}"
    return f"{name}: {value}"


class Writer:
    """Writes to a running slapd as its administrator; AD flavor bumps ``uSNChanged``."""

    def __init__(self, url: str, data: DirectoryData) -> None:
        self.data = data
        self.conn = ldap3.Connection(
            ldap3.Server(url), f"cn=admin,{data.suffix}", ADMIN_PASSWORD, auto_bind=True
        )

    def _usn(self) -> dict[str, list[tuple[str, list[str]]]]:
        if self.data.flavor != "ad":
            return {}
        return {"uSNChanged": [(ldap3.MODIFY_REPLACE, [str(next(self.data.usn))])]}

    def modify(self, dn: str, changes: dict[str, list[tuple[str, list[Any]]]]) -> None:
        if not self.conn.modify(dn, {**changes, **self._usn()}):
            raise RuntimeError(f"modify {dn}: {self.conn.result}")

    def set_disabled(self, user: DataUser, disabled: bool) -> None:
        if self.data.flavor == "ad":
            value = "514" if disabled else "512"
            self.modify(user.dn, {"userAccountControl": [(ldap3.MODIFY_REPLACE, [value])]})
        elif disabled:
            self.modify(
                user.dn, {"pwdAccountLockedTime": [(ldap3.MODIFY_REPLACE, ["000001010000Z"])]}
            )
        else:
            self.modify(user.dn, {"pwdAccountLockedTime": [(ldap3.MODIFY_DELETE, [])]})
        user.disabled = disabled

    def add_member(self, group: DataGroup, dn: str) -> None:
        self.modify(group.dn, {"member": [(ldap3.MODIFY_ADD, [dn])]})
        group.members.append(dn)

    def remove_member(self, group: DataGroup, dn: str) -> None:
        self.modify(group.dn, {"member": [(ldap3.MODIFY_DELETE, [dn])]})
        group.members.remove(dn)

    def delete_user(self, user: DataUser) -> None:
        for group in self.data.teams:
            if user.dn in group.members and len(group.members) > 1:
                self.remove_member(group, user.dn)
        if not self.conn.delete(user.dn):
            raise RuntimeError(f"delete {user.dn}: {self.conn.result}")
        self.data.people.remove(user)

    def rename_user(self, user: DataUser, new_rdn: str) -> str:
        """Rename (modrdn) and point every group's member value at the new DN, as AD and
        OpenLDAP's refint overlay do."""
        if not self.conn.modify_dn(user.dn, new_rdn):
            raise RuntimeError(f"rename {user.dn}: {self.conn.result}")
        new_dn = f"{new_rdn},{user.dn.split(',', 1)[1]}"
        if self.data.flavor == "ad":
            self.modify(new_dn, {})
        for group in self.data.teams:
            if user.dn in group.members:
                self.modify(
                    group.dn,
                    {
                        "member": [
                            (ldap3.MODIFY_DELETE, [user.dn]),
                            (ldap3.MODIFY_ADD, [new_dn]),
                        ]
                    },
                )
                group.members[group.members.index(user.dn)] = new_dn
        user.dn = new_dn
        return new_dn

    def close(self) -> None:
        self.conn.unbind()
