"""Schema profiles (Active Directory, OpenLDAP) and the mapping of one entry to a record.

A :class:`SchemaProfile` names, for one kind of directory, the object filters, the attribute
that is the *stable id* (never the DN: a rename keeps the person), the account-disabled rule
and the change attribute of incremental syncs:

============  ==========================  ==============================================
              Active Directory            OpenLDAP
============  ==========================  ==============================================
id            ``objectGUID`` (16 bytes,   ``entryUUID`` (RFC 4530, operational)
              little-endian GUID)
username      ``sAMAccountName``          ``uid``
disabled      ``userAccountControl``      ``pwdAccountLockedTime`` present (ppolicy)
              bit 2 (ACCOUNTDISABLE)
change        ``uSNChanged`` (integer)    ``entryCSN`` (microsecond change sequence;
                                          ``modifyTimestamp`` may be configured)
============  ==========================  ==============================================

:func:`resolve` lays the configured :class:`~idp_connectors.ldap.config.AttributeMap` and
``disabled_attribute`` over the profile. :class:`Mapper` turns raw attribute bytes (as
``ldap3`` returns them) into :class:`LdapUser` / :class:`LdapGroup`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from idp_connectors.ldap.config import LdapSettings

__all__ = [
    "SchemaProfile",
    "AD",
    "OPENLDAP",
    "PROFILES",
    "ResolvedSchema",
    "resolve",
    "LdapUser",
    "LdapGroup",
    "Mapper",
    "UAC_ACCOUNTDISABLE",
    "EntryError",
    "canonical_dn",
]

#: userAccountControl flag ACCOUNTDISABLE (MS-ADTS 2.2.16).
UAC_ACCOUNTDISABLE = 0x2

Raw = Mapping[str, Sequence[bytes]]


class EntryError(ValueError):
    """An entry lacks its id or username (it is skipped and counted, never guessed)."""


@dataclass(frozen=True, slots=True)
class SchemaProfile:
    name: str
    user_filter: str
    group_filter: str
    id: str
    id_binary: bool  # objectGUID: 16 raw bytes; entryUUID: the UUID text
    username: str
    email: str
    display_name: str
    group_name: str
    member: str
    change: str
    change_numeric: bool  # uSNChanged: integer; modifyTimestamp: generalized time
    disabled_rule: str  # "uac" | "locked_time"


AD = SchemaProfile(
    name="ad",
    user_filter="(&(objectClass=user)(!(objectClass=computer)))",
    group_filter="(objectClass=group)",
    id="objectGUID",
    id_binary=True,
    username="sAMAccountName",
    email="mail",
    display_name="displayName",
    group_name="cn",
    member="member",
    change="uSNChanged",
    change_numeric=True,
    disabled_rule="uac",
)

OPENLDAP = SchemaProfile(
    name="openldap",
    user_filter="(objectClass=inetOrgPerson)",
    group_filter="(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))",
    id="entryUUID",
    id_binary=False,
    username="uid",
    email="mail",
    display_name="cn",
    group_name="cn",
    member="member",
    change="entryCSN",
    change_numeric=False,
    disabled_rule="locked_time",
)

PROFILES = {"ad": AD, "openldap": OPENLDAP}


@dataclass(frozen=True, slots=True)
class ResolvedSchema:
    """The profile with the configuration laid over it: what a sync actually reads."""

    profile: SchemaProfile
    user_filter: str
    group_filter: str
    id: str
    username: str
    email: str
    display_name: str
    group_name: str
    member: str
    change: str
    disabled_attribute: str | None
    disabled_values: frozenset[str]

    def user_attributes(self) -> list[str]:
        names = [self.id, self.username, self.email, self.display_name, self.change]
        names.append("userAccountControl" if self.profile.disabled_rule == "uac" else "")
        names.append("pwdAccountLockedTime" if self.profile.disabled_rule == "locked_time" else "")
        names.append(self.disabled_attribute or "")
        return sorted({n for n in names if n})

    def group_attributes(self) -> list[str]:
        return sorted({self.id, self.group_name, self.member, self.change})


def resolve(settings: LdapSettings) -> ResolvedSchema:
    profile = PROFILES[settings.schema_profile]
    attrs = settings.attributes
    return ResolvedSchema(
        profile=profile,
        user_filter=settings.user_filter or profile.user_filter,
        group_filter=settings.group_filter or profile.group_filter,
        id=attrs.id or profile.id,
        username=attrs.username or profile.username,
        email=attrs.email or profile.email,
        display_name=attrs.display_name or profile.display_name,
        group_name=attrs.group_name or profile.group_name,
        member=attrs.member or profile.member,
        change=attrs.change or profile.change,
        disabled_attribute=settings.disabled_attribute,
        disabled_values=frozenset(v.lower() for v in settings.disabled_values),
    )


@dataclass(frozen=True, slots=True)
class LdapUser:
    id: str
    dn: str  # lower case (the key member values are matched on)
    username: str
    email: str | None
    display_name: str | None
    disabled: bool
    change: str | None


@dataclass(frozen=True, slots=True)
class LdapGroup:
    id: str
    dn: str
    name: str
    members: tuple[str, ...]  # member DNs, lower case
    change: str | None


_DN_SPECIAL = frozenset(',+"\\<>;=#')


def canonical_dn(dn: str) -> str:
    """One spelling per DN, so an entry's DN and the ``member`` values naming it compare
    equal: lower case, no spaces around separators, every RDN value unescaped (``\\2C``,
    ``\\,``) and re-escaped the same way (RFC 4514 specials as ``\\XX``)."""
    if "\\" not in dn and '"' not in dn and ", " not in dn and " ," not in dn and " =" not in dn:
        if "= " not in dn:
            return dn.lower()
    out: list[str] = []
    value = bytearray()
    in_value = False
    i = 0
    attr = ""
    while i <= len(dn):
        char = dn[i] if i < len(dn) else ","
        if not in_value:
            if char == "=":
                attr = attr.strip().lower()
                in_value = True
                value.clear()
            else:
                attr += char
        elif char == "\\" and i + 1 < len(dn):
            pair = dn[i + 1 : i + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                value.append(int(pair, 16))
                i += 2
            else:
                value.extend(dn[i + 1].encode("utf-8"))
                i += 1
        elif char in ",+":
            text = value.decode("utf-8", errors="replace").strip().lower()
            escaped = "".join(f"\\{ord(c):02x}" if c in _DN_SPECIAL else c for c in text)
            out.append(f"{attr}={escaped}{char if i < len(dn) else ''}")
            attr, in_value = "", False
        else:
            value.extend(char.encode("utf-8"))
        i += 1
    return "".join(out)


def _first(raw: Raw, name: str) -> bytes | None:
    values = _get(raw, name)
    return values[0] if values else None


class _Lowered(dict[str, Sequence[bytes]]):
    """An entry's attributes under lower-case names (read once per entry: ldap3's
    case-insensitive dictionary costs a normalisation, and a missing attribute an exception,
    on every look-up)."""


def _lowered(raw: Raw) -> _Lowered:
    return raw if isinstance(raw, _Lowered) else _Lowered((k.lower(), v) for k, v in raw.items())


def _get(raw: Raw, name: str) -> Sequence[bytes]:
    if isinstance(raw, _Lowered):
        return raw.get(name.lower(), ())
    values = raw.get(name)
    if values is None:  # servers may answer in another case than asked
        lowered = name.lower()
        for key, found in raw.items():
            if key.lower() == lowered:
                return found
        return ()
    return values


def _text(raw: Raw, name: str) -> str | None:
    value = _first(raw, name)
    return value.decode("utf-8", errors="replace") if value is not None else None


class Mapper:
    """Raw entries (DN + attribute bytes) -> records, per the resolved schema."""

    def __init__(self, schema: ResolvedSchema) -> None:
        self.schema = schema

    def entry_id(self, raw: Raw) -> str:
        value = _first(raw, self.schema.id)
        if value is None:
            raise EntryError(f"no {self.schema.id}")
        if self.schema.id.lower() == "objectguid":
            if len(value) != 16:
                raise EntryError("objectGUID is not 16 bytes")
            return str(uuid.UUID(bytes_le=bytes(value)))
        return value.decode("ascii", errors="strict").lower()

    def change(self, raw: Raw) -> str | None:
        return _text(raw, self.schema.change)

    def disabled(self, raw: Raw) -> bool:
        schema = self.schema
        if schema.profile.disabled_rule == "uac":
            uac = _text(raw, "userAccountControl")
            if uac is not None and uac.strip().lstrip("-").isdigit():
                if int(uac) & UAC_ACCOUNTDISABLE:
                    return True
        elif _get(raw, "pwdAccountLockedTime"):
            return True
        if schema.disabled_attribute is not None:
            values = _get(raw, schema.disabled_attribute)
            if values and not schema.disabled_values:
                return True
            found = {v.decode("utf-8", errors="replace").lower() for v in values}
            if found & schema.disabled_values:
                return True
        return False

    def user(self, dn: str, raw: Raw) -> LdapUser:
        raw = _lowered(raw)
        username = _text(raw, self.schema.username)
        if not username:
            raise EntryError(f"no {self.schema.username}")
        return LdapUser(
            id=self.entry_id(raw),
            dn=canonical_dn(dn),
            username=username,
            email=_text(raw, self.schema.email),
            display_name=_text(raw, self.schema.display_name),
            disabled=self.disabled(raw),
            change=self.change(raw),
        )

    def group(self, dn: str, raw: Raw) -> LdapGroup:
        raw = _lowered(raw)
        name = _text(raw, self.schema.group_name)
        if not name:
            raise EntryError(f"no {self.schema.group_name}")
        members = tuple(
            canonical_dn(m.decode("utf-8", errors="replace")) for m in _get(raw, self.schema.member)
        )
        return LdapGroup(
            id=self.entry_id(raw),
            dn=canonical_dn(dn),
            name=name,
            members=members,
            change=self.change(raw),
        )
