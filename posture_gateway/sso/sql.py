"""SQL implementation of the SSO session store (SQLite and PostgreSQL), and its revoker.

:class:`SqlSessionStore` runs each method in its own transaction on the shared
:class:`~mdm_core.storage.sql.database.Database` (table ``gateway_sso_sessions``, revision
``0008_sso_sessions``). :class:`ConnectionSessionRevoker` is the
:class:`mdm_core.storage.credentials.CredentialRevoker` registered (kind ``sessions``) with
``SqlStorage.add_credential_revoker``: it works on the connection of an MDM unit of work, so a
quarantine, block, revocation, retirement, wipe, re-enrollment or account disable ends the
sessions in the same transaction as the change that caused it.

Ending a session (logout, admin) also revokes the OIDC tokens issued in it
(``oidc_tokens.session_id``), in the same transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, and_, func, insert, select, update

from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.encoding import as_utc
from posture_gateway.oidc.tables import gateway_sso_sessions as t
from posture_gateway.oidc.tables import oidc_tokens
from posture_gateway.sso.store import NewSession, Session

__all__ = [
    "SqlSessionStore",
    "ConnectionSessionRevoker",
    "cookie_digest",
    "revoke_sessions_on",
]

Clock = Callable[[], datetime]

#: Cookie values are 256-bit random ids (``secrets.token_urlsafe(32)``: 43 characters).
_COOKIE_MAX = 64


def cookie_digest(cookie: str) -> str:
    """SHA-256 hex of a session cookie value: the stored key."""
    return hashlib.sha256(cookie.encode("utf-8")).hexdigest()


def _session(row: Row[Any]) -> Session:
    return Session(
        public_id=row.public_id,
        user_id=row.user_id,
        device_id=row.device_id,
        auth_time=as_utc(row.auth_time),
        acr=row.acr,
        amr=tuple(str(a) for a in row.amr),
        data=dict(row.data or {}),
        created_at=as_utc(row.created_at),
        last_seen_at=as_utc(row.last_seen_at),
        idle_expires_at=as_utc(row.idle_expires_at),
        absolute_expires_at=as_utc(row.absolute_expires_at),
        revoked_at=as_utc(row.revoked_at) if row.revoked_at is not None else None,
        revoked_reason=row.revoked_reason,
    )


def _live(now: datetime) -> Any:
    return and_(t.c.revoked_at.is_(None), t.c.idle_expires_at > now, t.c.absolute_expires_at > now)


def revoke_sessions_on(conn: Connection, cond: Any, reason: str, now: datetime) -> int:
    """Revoke the live sessions matching ``cond`` and the tokens issued in them."""
    ids = [r.public_id for r in conn.execute(select(t.c.public_id).where(and_(cond, _live(now))))]
    if not ids:
        return 0
    conn.execute(
        update(t)
        .where(and_(t.c.public_id.in_(ids), t.c.revoked_at.is_(None)))
        .values(revoked_at=now, revoked_reason=reason[:32])
    )
    conn.execute(
        update(oidc_tokens)
        .where(and_(oidc_tokens.c.session_id.in_(ids), oidc_tokens.c.revoked_at.is_(None)))
        .values(revoked_at=now, revoked_reason=reason[:32])
    )
    return len(ids)


def _selector(public_id: str | None, user_id: str | None, device_id: str | None) -> Any:
    given = [
        (c, v)
        for c, v in ((t.c.public_id, public_id), (t.c.user_id, user_id), (t.c.device_id, device_id))
        if v is not None
    ]
    if len(given) != 1:
        raise ValueError("give exactly one of public_id, user_id, device_id")
    column, value = given[0]
    return column == value


class SqlSessionStore:
    """:class:`~posture_gateway.sso.store.SessionStore` on SQL."""

    def __init__(
        self,
        database: Database,
        *,
        idle_ttl: timedelta,
        absolute_ttl: timedelta,
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        if database is None:
            raise ValueError("SqlSessionStore needs a database")
        if idle_ttl <= timedelta(0) or absolute_ttl <= timedelta(0):
            raise ValueError("session lifetimes must be positive")
        self._db = database
        self.idle_ttl = idle_ttl
        self.absolute_ttl = absolute_ttl
        self._clock = clock

    def create(self, new: NewSession) -> tuple[str, Session]:
        if not new.user_id or not new.device_id:
            raise ValueError("a session needs a user and a device")
        now = self._clock()
        cookie = secrets.token_urlsafe(32)
        absolute = now + self.absolute_ttl
        session = Session(
            public_id=secrets.token_urlsafe(16),
            user_id=new.user_id,
            device_id=new.device_id,
            auth_time=new.auth_time,
            acr=new.acr,
            amr=tuple(new.amr),
            data=dict(new.data),
            created_at=now,
            last_seen_at=now,
            idle_expires_at=min(now + self.idle_ttl, absolute),
            absolute_expires_at=absolute,
        )
        with self._db.transaction() as conn:
            conn.execute(
                insert(t),
                {
                    "id_hash": cookie_digest(cookie),
                    "public_id": session.public_id,
                    "user_id": session.user_id,
                    "device_id": session.device_id,
                    "auth_time": session.auth_time,
                    "acr": session.acr,
                    "amr": list(session.amr),
                    "data": dict(session.data),
                    "created_at": now,
                    "last_seen_at": now,
                    "idle_expires_at": session.idle_expires_at,
                    "absolute_expires_at": absolute,
                },
            )
        return cookie, session

    def find_live(self, cookie: str) -> Session | None:
        if not cookie or len(cookie) > _COOKIE_MAX:
            return None
        now = self._clock()
        key = cookie_digest(cookie)
        with self._db.transaction() as conn:
            row = conn.execute(select(t).where(and_(t.c.id_hash == key, _live(now)))).first()
            if row is None:
                return None
            idle = min(now + self.idle_ttl, as_utc(row.absolute_expires_at))
            conn.execute(
                update(t)
                .where(and_(t.c.id_hash == key, t.c.revoked_at.is_(None)))
                .values(last_seen_at=now, idle_expires_at=idle)
            )
        return replace(_session(row), last_seen_at=now, idle_expires_at=idle)

    def revoke(
        self,
        *,
        reason: str,
        public_id: str | None = None,
        user_id: str | None = None,
        device_id: str | None = None,
    ) -> int:
        cond = _selector(public_id, user_id, device_id)
        with self._db.transaction() as conn:
            return revoke_sessions_on(conn, cond, reason, self._clock())

    def list(self, *, user_id: str | None = None, device_id: str | None = None) -> list[Session]:
        cond = _selector(None, user_id, device_id)
        with self._db.transaction() as conn:
            rows = conn.execute(
                select(t).where(cond).order_by(t.c.created_at.desc(), t.c.public_id)
            ).all()
        return [_session(r) for r in rows]

    def live_count(self) -> int:
        """How many sessions are live now (for the operator; not part of the protocol)."""
        with self._db.transaction() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(t).where(_live(self._clock()))
                ).scalar_one()
            )


class ConnectionSessionRevoker:
    """:class:`mdm_core.storage.credentials.CredentialRevoker` over ``gateway_sso_sessions``,
    bound to the connection of one MDM unit of work (registered with kind ``sessions``).

    Counts sessions only: the tokens of a device or user are revoked (and counted) by the
    token revoker registered beside it."""

    def __init__(self, conn: Connection) -> None:
        if conn is None:
            raise ValueError("ConnectionSessionRevoker needs a connection")
        self._conn = conn

    def revoke_for_device(self, device_id: str, *, reason: str, at: datetime) -> int:
        return _end(self._conn, t.c.device_id == device_id, reason, at)

    def revoke_for_user(self, user_id: str, *, reason: str, at: datetime) -> int:
        return _end(self._conn, t.c.user_id == user_id, reason, at)


def _end(conn: Connection, cond: Any, reason: str, at: datetime) -> int:
    """Revoke every session matching ``cond`` not yet revoked; returns how many were live.

    Expired ones are closed too (nothing to count: they were not usable)."""
    live = int(
        conn.execute(select(func.count()).select_from(t).where(and_(cond, _live(at)))).scalar_one()
    )
    conn.execute(
        update(t)
        .where(and_(cond, t.c.revoked_at.is_(None)))
        .values(revoked_at=at, revoked_reason=reason[:32])
    )
    return live
