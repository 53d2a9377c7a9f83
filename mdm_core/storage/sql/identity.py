"""SQL implementation of :class:`mdm_core.storage.identity.DeviceIdentityStore`.

One ``SELECT`` with a ``LEFT JOIN`` from the device row to its current certificate; the
statement is built once per process and reused. On PostgreSQL ``lookup_and_remember`` puts
the replay insert (:mod:`mdm_core.storage.sql.replay`) in a CTE of the same statement, so a
request proof costs one round trip; SQLite runs the two statements.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, exists, select
from sqlalchemy.dialects import postgresql

from mdm_core.storage.identity import DeviceIdentity
from mdm_core.storage.sql.devices import DEVICE_COLUMNS, device_from_row
from mdm_core.storage.sql.encoding import as_utc
from mdm_core.storage.sql.replay import SqlReplayStore
from mdm_core.storage.sql.tables import certificates, devices, used_proofs

__all__ = ["SqlDeviceIdentityStore", "IDENTITY_COLUMNS", "IDENTITY_JOIN", "identity_from_row"]

#: The columns :func:`identity_from_row` reads (devices LEFT JOIN its current certificate).
IDENTITY_COLUMNS = (
    *DEVICE_COLUMNS,
    devices.c.public_key,
    certificates.c.not_after.label("cert_not_after"),
    certificates.c.revoked_at.label("cert_revoked_at"),
)
#: The join behind :data:`IDENTITY_COLUMNS`.
IDENTITY_JOIN = devices.outerjoin(
    certificates,
    (certificates.c.serial == devices.c.cert_serial) & (certificates.c.device_id == devices.c.id),
)

_LOOKUP = (
    select(*IDENTITY_COLUMNS)
    .select_from(IDENTITY_JOIN)
    .where(devices.c.id == bindparam("device_id"))
)

_REMEMBERED = (
    postgresql.insert(used_proofs)
    .values(jti=bindparam("jti"), expires_at=bindparam("expires_at"))
    .on_conflict_do_nothing(index_elements=["jti"])
    .returning(used_proofs.c.jti)
    .cte("remembered")
)
_LOOKUP_AND_REMEMBER_PG = _LOOKUP.add_columns(exists(select(_REMEMBERED.c.jti)).label("fresh"))


class SqlDeviceIdentityStore:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def lookup(self, device_id: str) -> DeviceIdentity | None:
        row = self.conn.execute(_LOOKUP, {"device_id": device_id}).one_or_none()
        return None if row is None else identity_from_row(row)

    def lookup_and_remember(
        self, device_id: str, replay_key: str, expires_at: datetime
    ) -> tuple[DeviceIdentity | None, bool]:
        if self.dialect != "postgresql":
            identity = self.lookup(device_id)
            return identity, SqlReplayStore(self.conn, self.dialect).remember(
                replay_key, expires_at
            )
        params = {"device_id": device_id, "jti": replay_key, "expires_at": as_utc(expires_at)}
        row = self.conn.execute(_LOOKUP_AND_REMEMBER_PG, params).one_or_none()
        if row is None:
            return None, True  # no device row, no result row: the refusal rolls back
        return identity_from_row(row), bool(row.fresh)


def identity_from_row(row: Row[*tuple[Any, ...]]) -> DeviceIdentity:
    """Build a :class:`DeviceIdentity` from a row selected with :data:`IDENTITY_COLUMNS`."""
    return DeviceIdentity(
        device=device_from_row(row),
        public_key=bytes(row.public_key) if row.public_key is not None else None,
        cert_not_after=as_utc(row.cert_not_after) if row.cert_not_after else None,
        cert_revoked_at=as_utc(row.cert_revoked_at) if row.cert_revoked_at else None,
    )
