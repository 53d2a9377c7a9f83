"""SQL implementation of :class:`mdm_core.storage.certauth.CertificateStore`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from mdm_core.domain.errors import Conflict, NotFound
from mdm_core.storage.certauth import CertificateRecord, StoredCaKey
from mdm_core.storage.sql.encoding import as_utc
from mdm_core.storage.sql.tables import ca_keys, certificates

__all__ = ["SqlCertificateStore", "SqlCaKeyStore"]


def _record(row: Row[Any]) -> CertificateRecord:
    return CertificateRecord(
        serial=row.serial,
        device_id=row.device_id,
        user_id=row.user_id,
        key_thumbprint=row.key_thumbprint,
        not_before=as_utc(row.not_before),
        not_after=as_utc(row.not_after),
        pem=row.pem,
        revoked_at=as_utc(row.revoked_at) if row.revoked_at else None,
        revocation_reason=row.revocation_reason,
    )


class SqlCertificateStore:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def add(self, certificate: CertificateRecord) -> None:
        try:
            self.conn.execute(
                insert(certificates).values(
                    serial=certificate.serial,
                    device_id=certificate.device_id,
                    user_id=certificate.user_id,
                    key_thumbprint=certificate.key_thumbprint,
                    not_before=as_utc(certificate.not_before),
                    not_after=as_utc(certificate.not_after),
                    revoked_at=certificate.revoked_at,
                    revocation_reason=certificate.revocation_reason,
                    pem=certificate.pem,
                )
            )
        except IntegrityError as exc:
            raise Conflict(f"certificate serial {certificate.serial} already exists") from exc

    def get(self, serial: str) -> CertificateRecord | None:
        row = self.conn.execute(
            select(certificates).where(certificates.c.serial == serial)
        ).one_or_none()
        return _record(row) if row is not None else None

    def is_revoked(self, serial: str) -> bool:
        row = self.conn.execute(
            select(certificates.c.revoked_at).where(certificates.c.serial == serial)
        ).one_or_none()
        return row is None or row.revoked_at is not None

    def revoke(self, serial: str, *, reason: str, at: datetime) -> bool:
        result = self.conn.execute(
            update(certificates)
            .where(certificates.c.serial == serial, certificates.c.revoked_at.is_(None))
            .values(revoked_at=as_utc(at), revocation_reason=reason[:64])
        )
        if result.rowcount == 1:
            return True
        if self.get(serial) is None:
            raise NotFound(f"unknown certificate serial {serial}")
        return False

    def revoke_for_device(self, device_id: str, *, reason: str, at: datetime) -> list[str]:
        serials = [
            row.serial
            for row in self.conn.execute(
                select(certificates.c.serial).where(
                    certificates.c.device_id == device_id, certificates.c.revoked_at.is_(None)
                )
            )
        ]
        return [s for s in serials if self.revoke(s, reason=reason, at=at)]


class SqlCaKeyStore:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def get_ca_key(self, key_id: str) -> StoredCaKey | None:
        row = self.conn.execute(select(ca_keys).where(ca_keys.c.id == key_id)).one_or_none()
        if row is None:
            return None
        return StoredCaKey(
            id=row.id,
            encrypted_key_pem=row.encrypted_key_pem,
            certificate_pem=row.certificate_pem,
            created_at=as_utc(row.created_at),
        )

    def add_ca_key(self, key: StoredCaKey) -> bool:
        dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        result = self.conn.execute(
            dialect_insert(ca_keys)
            .values(
                id=key.id,
                encrypted_key_pem=key.encrypted_key_pem,
                certificate_pem=key.certificate_pem,
                created_at=as_utc(key.created_at),
            )
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(ca_keys.c.id)  # rowcount is not reliable for ON CONFLICT on psycopg
        )
        return result.first() is not None
