"""SQL implementation of :class:`mdm_core.storage.identity.DeviceIdentityStore`.

One ``SELECT`` with a ``LEFT JOIN`` from the device row to its current certificate; the
statement is built once per process and reused.
"""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, select

from mdm_core.storage.identity import DeviceIdentity
from mdm_core.storage.sql.devices import DEVICE_COLUMNS, device_from_row
from mdm_core.storage.sql.encoding import as_utc
from mdm_core.storage.sql.tables import certificates, devices

__all__ = ["SqlDeviceIdentityStore"]

_LOOKUP = (
    select(
        *DEVICE_COLUMNS,
        devices.c.public_key,
        certificates.c.not_after.label("cert_not_after"),
        certificates.c.revoked_at.label("cert_revoked_at"),
    )
    .select_from(
        devices.outerjoin(
            certificates,
            (certificates.c.serial == devices.c.cert_serial)
            & (certificates.c.device_id == devices.c.id),
        )
    )
    .where(devices.c.id == bindparam("device_id"))
)


class SqlDeviceIdentityStore:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def lookup(self, device_id: str) -> DeviceIdentity | None:
        row = self.conn.execute(_LOOKUP, {"device_id": device_id}).one_or_none()
        if row is None:
            return None
        return DeviceIdentity(
            device=device_from_row(row),
            public_key=bytes(row.public_key) if row.public_key is not None else None,
            cert_not_after=as_utc(row.cert_not_after) if row.cert_not_after else None,
            cert_revoked_at=as_utc(row.cert_revoked_at) if row.cert_revoked_at else None,
        )
