"""SQL implementation of the enrollment token and registered-serial stores."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from mdm_core.domain.errors import Conflict
from mdm_core.posture.model import Ownership, Platform
from mdm_core.storage.enrollment import EnrollmentTokenRecord, RegisteredSerial
from mdm_core.storage.sql.encoding import as_utc
from mdm_core.storage.sql.tables import enrollment_tokens, registered_serials

__all__ = ["SqlEnrollmentTokenStore", "SqlRegisteredSerialStore"]


def _token(row: Row[Any]) -> EnrollmentTokenRecord:
    return EnrollmentTokenRecord(
        token_hash=row.token_hash,
        user_id=row.user_id,
        ownership=Ownership(row.ownership),
        platform=Platform(row.platform) if row.platform else None,
        created_by=row.created_by,
        created_at=as_utc(row.created_at),
        expires_at=as_utc(row.expires_at),
        used_at=as_utc(row.used_at) if row.used_at else None,
        used_by_device=row.used_by_device,
    )


def _serial(row: Row[Any]) -> RegisteredSerial:
    return RegisteredSerial(
        serial_number=row.serial_number,
        platform=Platform(row.platform),
        user_id=row.user_id,
        registered_by=row.registered_by,
        registered_at=as_utc(row.registered_at),
        device_id=row.device_id,
        secret_hash=row.secret_hash,
    )


class SqlEnrollmentTokenStore:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def add_token(self, token: EnrollmentTokenRecord) -> None:
        try:
            self.conn.execute(
                insert(enrollment_tokens).values(
                    token_hash=token.token_hash,
                    user_id=token.user_id,
                    ownership=token.ownership.value,
                    platform=token.platform.value if token.platform else None,
                    created_by=token.created_by,
                    created_at=as_utc(token.created_at),
                    expires_at=as_utc(token.expires_at),
                    used_at=as_utc(token.used_at) if token.used_at else None,
                    used_by_device=token.used_by_device,
                )
            )
        except IntegrityError as exc:
            raise Conflict("enrollment token already exists") from exc

    def get_token(self, token_hash: str) -> EnrollmentTokenRecord | None:
        row = self.conn.execute(
            select(enrollment_tokens).where(enrollment_tokens.c.token_hash == token_hash)
        ).one_or_none()
        return _token(row) if row is not None else None

    def redeem_token(
        self, token_hash: str, *, device_id: str, at: datetime
    ) -> EnrollmentTokenRecord | None:
        at = as_utc(at)
        # One conditional UPDATE: the row lock (PostgreSQL) or the write lock (SQLite) makes
        # a concurrent second redemption re-check ``used_at IS NULL`` and match no row.
        result = self.conn.execute(
            update(enrollment_tokens)
            .where(
                enrollment_tokens.c.token_hash == token_hash,
                enrollment_tokens.c.used_at.is_(None),
                enrollment_tokens.c.expires_at > at,
            )
            .values(used_at=at, used_by_device=device_id)
        )
        if result.rowcount != 1:
            return None
        return self.get_token(token_hash)


class SqlRegisteredSerialStore:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def register(self, serial: RegisteredSerial) -> None:
        values = {
            "platform": serial.platform.value,
            "user_id": serial.user_id,
            "registered_by": serial.registered_by,
            "registered_at": as_utc(serial.registered_at),
            "secret_hash": serial.secret_hash,
        }
        dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = dialect_insert(registered_serials).values(
            serial_number=serial.serial_number, device_id=serial.device_id, **values
        )
        # Re-registration updates who/what, never the device the serial is bound to.
        self.conn.execute(stmt.on_conflict_do_update(index_elements=["serial_number"], set_=values))

    def get(self, serial_number: str) -> RegisteredSerial | None:
        row = self.conn.execute(
            select(registered_serials).where(registered_serials.c.serial_number == serial_number)
        ).one_or_none()
        return _serial(row) if row is not None else None

    def bind_device(self, serial_number: str, *, device_id: str, expected: str | None) -> bool:
        bound = registered_serials.c.device_id
        result = self.conn.execute(
            update(registered_serials)
            .where(
                registered_serials.c.serial_number == serial_number,
                bound.is_(None) if expected is None else bound == expected,
            )
            .values(device_id=device_id)
        )
        return result.rowcount == 1
