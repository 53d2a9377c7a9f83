"""SQL implementation of :class:`mdm_core.storage.devices.DeviceStore`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from mdm_core.domain.errors import Conflict, NotFound
from mdm_core.domain.model import DeviceRecord, DeviceStatus
from mdm_core.posture.model import Ownership, Platform
from mdm_core.storage.sql.encoding import as_utc
from mdm_core.storage.sql.tables import devices

__all__ = ["SqlDeviceStore", "DEVICE_COLUMNS", "device_from_row"]

#: The columns that make a :class:`DeviceRecord` (the public key is not part of it).
DEVICE_COLUMNS = (
    devices.c.id,
    devices.c.user_id,
    devices.c.platform,
    devices.c.ownership,
    devices.c.status,
    devices.c.serial_number,
    devices.c.cert_serial,
    devices.c.key_thumbprint,
    devices.c.enrollment_generation,
    devices.c.enrolled_at,
    devices.c.last_checkin_at,
    devices.c.status_reason,
)


def device_from_row(row: Row[*tuple[Any, ...]]) -> DeviceRecord:
    """Build a :class:`DeviceRecord` from a row selected with :data:`DEVICE_COLUMNS`."""
    return DeviceRecord(
        id=row.id,
        user_id=row.user_id,
        platform=Platform(row.platform),
        ownership=Ownership(row.ownership),
        status=DeviceStatus(row.status),
        serial_number=row.serial_number,
        cert_serial=row.cert_serial,
        key_thumbprint=row.key_thumbprint,
        enrollment_generation=int(row.enrollment_generation),
        enrolled_at=as_utc(row.enrolled_at),
        last_checkin_at=as_utc(row.last_checkin_at) if row.last_checkin_at else None,
        status_reason=row.status_reason,
    )


class SqlDeviceStore:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def get(self, device_id: str) -> DeviceRecord | None:
        row = self.conn.execute(
            select(*DEVICE_COLUMNS).where(devices.c.id == device_id)
        ).one_or_none()
        return device_from_row(row) if row is not None else None

    def create(self, device: DeviceRecord, *, public_key: bytes) -> None:
        try:
            self.conn.execute(
                insert(devices).values(
                    id=device.id,
                    user_id=device.user_id,
                    platform=device.platform.value,
                    ownership=device.ownership.value,
                    serial_number=device.serial_number,
                    status=device.status.value,
                    status_reason=device.status_reason,
                    cert_serial=device.cert_serial,
                    public_key=public_key,
                    key_thumbprint=device.key_thumbprint,
                    enrollment_generation=device.enrollment_generation,
                    enrolled_at=as_utc(device.enrolled_at),
                    updated_at=as_utc(device.enrolled_at),
                    last_checkin_at=device.last_checkin_at,
                )
            )
        except IntegrityError as exc:
            raise Conflict(f"device {device.id} already exists") from exc

    def update_status(
        self, device_id: str, status: DeviceStatus, *, reason: str | None, at: datetime
    ) -> DeviceRecord:
        result = self.conn.execute(
            update(devices)
            .where(devices.c.id == device_id)
            .values(status=status.value, status_reason=reason, updated_at=as_utc(at))
        )
        if result.rowcount != 1:
            raise NotFound(f"unknown device {device_id}")
        updated = self.get(device_id)
        assert updated is not None
        return updated

    def set_identity(
        self,
        device_id: str,
        *,
        cert_serial: str,
        public_key: bytes,
        key_thumbprint: str,
        status: DeviceStatus,
        status_reason: str | None,
        expected_generation: int,
        new_generation: int,
        at: datetime,
    ) -> DeviceRecord:
        result = self.conn.execute(
            update(devices)
            .where(
                devices.c.id == device_id,
                devices.c.enrollment_generation == expected_generation,
            )
            .values(
                cert_serial=cert_serial,
                public_key=public_key,
                key_thumbprint=key_thumbprint,
                status=status.value,
                status_reason=status_reason,
                enrollment_generation=new_generation,
                updated_at=as_utc(at),
            )
        )
        if result.rowcount != 1:
            current = self.get(device_id)
            if current is None:
                raise NotFound(f"unknown device {device_id}")
            raise Conflict(f"device {device_id} changed concurrently; retry")
        updated = self.get(device_id)
        assert updated is not None
        return updated

    def list_for_user(self, user_id: str) -> list[DeviceRecord]:
        rows = self.conn.execute(
            select(*DEVICE_COLUMNS)
            .where(devices.c.user_id == user_id)
            .order_by(devices.c.enrolled_at, devices.c.id)
        )
        return [device_from_row(row) for row in rows]
