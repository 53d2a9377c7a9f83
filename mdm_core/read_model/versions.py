"""Entity keys and the one-statement version read of the read model.

A key's version is the count of committed writes to the rows behind it (bumped by the
triggers of :mod:`mdm_core.storage.sql.version_triggers`); a key never written has version 0.
Read the versions BEFORE the data they guard: a write that lands between the two makes the
cached copy look older than it is (refetched next time), never newer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from sqlalchemy import Connection, bindparam, select

from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.tables import read_model_versions

__all__ = [
    "DIRECTORY",
    "TOKENS",
    "VersionStore",
    "SqlVersionStore",
    "device_key",
    "read_versions_autocommit",
]

#: Users, groups, memberships and identity links: one key (the directory changes rarely).
DIRECTORY = "directory"
#: The gateway's issued tokens (revocation and rotation bump it).
TOKENS = "tokens"


def device_key(device_id: str) -> str:
    """The key of a device's record, stored posture and rule state."""
    return "device:" + device_id


class VersionStore(Protocol):
    def versions(self, keys: Iterable[str]) -> Mapping[str, int]:
        """The current version of each of ``keys`` (0 for a key never written), in one read."""
        ...


_SELECT = select(read_model_versions.c.key, read_model_versions.c.version).where(
    read_model_versions.c.key.in_(bindparam("keys", expanding=True))
)


class SqlVersionStore:
    """:class:`VersionStore` on a unit of work's connection (one ``SELECT .. IN``)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def versions(self, keys: Iterable[str]) -> Mapping[str, int]:
        wanted = list(dict.fromkeys(keys))
        found = {k: 0 for k in wanted}
        if wanted:
            for row in self.conn.execute(_SELECT, {"keys": wanted}):
                found[row.key] = int(row.version)
        return found


# The same read as _SELECT, as the driver sees it (one placeholder per key: dumping an array
# parameter costs more than the few strings).
_PG_SELECT = (
    f"SELECT {read_model_versions.c.key.name}, {read_model_versions.c.version.name} "
    f"FROM {read_model_versions.name} WHERE {read_model_versions.c.key.name} IN "
)


def read_versions_autocommit(database: Database, keys: Iterable[str]) -> Mapping[str, int]:
    """The versions of ``keys`` in ONE autocommit statement on PostgreSQL (one round trip,
    no transaction: :meth:`Database.autocommit_cursor`)."""
    wanted = list(dict.fromkeys(keys))
    found = {k: 0 for k in wanted}
    if wanted:
        sql = _PG_SELECT + "(" + ", ".join(["%s"] * len(wanted)) + ")"
        with database.autocommit_cursor() as cursor:
            cursor.execute(sql, wanted)
            for key, version in cursor.fetchall():
                found[key] = int(version)
    return found
