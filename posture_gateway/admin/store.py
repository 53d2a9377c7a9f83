"""SQL store of the named admins (``admins``, :mod:`.tables`).

One class over one ``Connection`` (the caller owns the transaction: the unit of work of
:mod:`mdm_core.storage.sql.uow`, so a change and its audit record commit together). Same code
on SQLite and PostgreSQL (``tests/contracts/test_admin_store.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from mdm_core.domain.errors import Conflict, NotFound
from mdm_core.storage.sql.encoding import as_utc
from posture_gateway.admin.principals import AdminPrincipal, Role
from posture_gateway.admin.tables import admins

__all__ = ["AdminRecord", "AdminExists", "UnknownAdmin", "SqlAdminStore", "TOUCH_EVERY"]

#: ``last_used_at`` is written at most this often per admin (not a write per request).
TOUCH_EVERY = timedelta(minutes=1)


class AdminExists(Conflict):
    reason = "admin_exists"


class UnknownAdmin(NotFound):
    reason = "unknown_admin"


@dataclass(frozen=True, slots=True)
class AdminRecord:
    name: str
    role: Role
    token_id: str
    token_hash: str
    created_by: str
    created_at: datetime
    updated_at: datetime
    token_issued_at: datetime
    disabled_at: datetime | None
    last_used_at: datetime | None

    @property
    def enabled(self) -> bool:
        return self.disabled_at is None

    @property
    def principal(self) -> AdminPrincipal:
        return AdminPrincipal(self.name, self.role)

    def __repr__(self) -> str:  # the hash stays out of logs too
        return f"AdminRecord(name={self.name!r}, role={self.role.value!r})"

    def to_json(self) -> dict[str, Any]:
        def ts(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "name": self.name,
            "role": self.role.value,
            "enabled": self.enabled,
            "created_by": self.created_by,
            "created_at": ts(self.created_at),
            "token_issued_at": ts(self.token_issued_at),
            "disabled_at": ts(self.disabled_at),
            "last_used_at": ts(self.last_used_at),
        }


def _opt(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def _record(row: Any) -> AdminRecord:
    return AdminRecord(
        name=row.name,
        role=Role(row.role),
        token_id=row.token_id,
        token_hash=row.token_hash,
        created_by=row.created_by,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
        token_issued_at=as_utc(row.token_issued_at),
        disabled_at=_opt(row.disabled_at),
        last_used_at=_opt(row.last_used_at),
    )


class SqlAdminStore:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def add(
        self,
        name: str,
        role: Role,
        *,
        token_id: str,
        token_hash: str,
        created_by: str,
        at: datetime,
    ) -> AdminRecord:
        """Insert a new admin; :class:`AdminExists` when the name is taken."""
        if self.get(name) is not None:
            raise AdminExists(f"an admin named {name!r} exists")
        try:
            with self.conn.begin_nested():
                self.conn.execute(
                    insert(admins).values(
                        name=name,
                        role=role.value,
                        token_id=token_id,
                        token_hash=token_hash,
                        created_by=created_by,
                        created_at=at,
                        updated_at=at,
                        token_issued_at=at,
                        disabled_at=None,
                        last_used_at=None,
                    )
                )
        except IntegrityError:
            raise AdminExists(f"an admin named {name!r} exists") from None
        record = self.get(name)
        assert record is not None
        return record

    def get(self, name: str) -> AdminRecord | None:
        row = self.conn.execute(select(admins).where(admins.c.name == name)).first()
        return _record(row) if row is not None else None

    def by_token_id(self, token_id: str) -> AdminRecord | None:
        row = self.conn.execute(select(admins).where(admins.c.token_id == token_id)).first()
        return _record(row) if row is not None else None

    def list(self) -> list[AdminRecord]:
        return [_record(r) for r in self.conn.execute(select(admins).order_by(admins.c.name))]

    def disable(self, name: str, *, at: datetime) -> AdminRecord:
        """Disable ``name`` (a disabled admin stays disabled: the first time is kept)."""
        current = self._existing(name)
        if current.disabled_at is None:
            self.conn.execute(
                update(admins).where(admins.c.name == name).values(disabled_at=at, updated_at=at)
            )
        return self._existing(name)

    def replace_token(
        self, name: str, *, token_id: str, token_hash: str, at: datetime
    ) -> AdminRecord:
        """A new token for ``name``; the old one stops working in the same transaction."""
        self._existing(name)
        self.conn.execute(
            update(admins)
            .where(admins.c.name == name)
            .values(token_id=token_id, token_hash=token_hash, token_issued_at=at, updated_at=at)
        )
        return self._existing(name)

    def touch(self, name: str, *, at: datetime) -> bool:
        """Set ``last_used_at`` unless it is more recent than :data:`TOUCH_EVERY` ago."""
        result = self.conn.execute(
            update(admins)
            .where(
                admins.c.name == name,
                or_(admins.c.last_used_at.is_(None), admins.c.last_used_at < at - TOUCH_EVERY),
            )
            .values(last_used_at=at)
        )
        return bool(result.rowcount)

    def _existing(self, name: str) -> AdminRecord:
        record = self.get(name)
        if record is None:
            raise UnknownAdmin(f"no admin named {name!r}")
        return record
