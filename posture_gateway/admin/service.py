"""Named admins: add, list, disable, rotate (each audited), and authenticate a token.

Every change runs in one unit of work with its audit record (``admin.added``,
``admin.disabled``, ``admin.token_rotated``; the actor is whoever did it, e.g.
``operator:<login>`` from ``posture admin``). A new or rotated token is returned ONCE, as
:class:`~posture_gateway.admin.tokens.IssuedToken`; only its hash is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from mdm_core.domain.errors import BadRequest
from mdm_core.storage.sql.uow import SqlStorage, SqlUnitOfWork
from posture_gateway.admin.principals import AdminPrincipal, Role, valid_admin_name
from posture_gateway.admin.store import TOUCH_EVERY, AdminRecord, SqlAdminStore, UnknownAdmin
from posture_gateway.admin.tokens import IssuedToken, new_token, parse_token, secret_matches

__all__ = [
    "InvalidAdminName",
    "Authenticated",
    "add_admin",
    "list_admins",
    "disable_admin",
    "rotate_admin",
    "authenticate_token",
    "UnknownAdmin",
]


class InvalidAdminName(BadRequest):
    reason = "invalid_admin_name"


def _store(uow: SqlUnitOfWork) -> SqlAdminStore:
    return SqlAdminStore(uow.conn, uow.dialect)


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def add_admin(
    storage: SqlStorage, name: str, role: Role, *, actor: str, now: datetime | None = None
) -> tuple[AdminRecord, IssuedToken]:
    if not valid_admin_name(name):
        raise InvalidAdminName("an admin name is 1-64 of a-z 0-9 . _ - (starting a-z or 0-9)")
    at = _now(now)
    token = new_token()
    with storage.unit_of_work() as uow:
        record = _store(uow).add(
            name,
            Role(role),
            token_id=token.token_id,
            token_hash=token.secret_hash,
            created_by=actor,
            at=at,
        )
        uow.audit.record(
            actor, "admin.added", f"admin:{name}", "ok", {"role": record.role.value}, at=at
        )
    return record, token


def list_admins(storage: SqlStorage) -> list[AdminRecord]:
    with storage.unit_of_work() as uow:
        return _store(uow).list()


def disable_admin(
    storage: SqlStorage, name: str, *, actor: str, now: datetime | None = None
) -> AdminRecord:
    at = _now(now)
    with storage.unit_of_work() as uow:
        record = _store(uow).disable(name, at=at)
        uow.audit.record(actor, "admin.disabled", f"admin:{name}", "ok", {}, at=at)
    return record


def rotate_admin(
    storage: SqlStorage, name: str, *, actor: str, now: datetime | None = None
) -> tuple[AdminRecord, IssuedToken]:
    """A new token for ``name`` (the old one is refused from now on)."""
    at = _now(now)
    token = new_token()
    with storage.unit_of_work() as uow:
        record = _store(uow).replace_token(
            name, token_id=token.token_id, token_hash=token.secret_hash, at=at
        )
        uow.audit.record(actor, "admin.token_rotated", f"admin:{name}", "ok", {}, at=at)
    return record, token


@dataclass(frozen=True)
class Authenticated:
    """The outcome of :func:`authenticate_token`: a principal, or why not (and, for a token
    whose id named a real admin, that admin's name, for the audit trail)."""

    principal: AdminPrincipal | None
    refusal: str | None = None
    claimed: str | None = None


def authenticate_token(
    storage: SqlStorage, presented: str, *, now: datetime | None = None
) -> Authenticated:
    """Check a per-admin token: found by its id, its secret compared in constant time, a
    disabled admin refused. ``last_used_at`` is written at most once a minute."""
    parsed = parse_token(presented)
    if parsed is None:
        return Authenticated(None, "malformed_token")
    token_id, secret = parsed
    at = _now(now)
    with storage.unit_of_work() as uow:
        record = _store(uow).by_token_id(token_id)
    if record is None:
        return Authenticated(None, "unknown_token")
    if not secret_matches(secret, record.token_hash):
        return Authenticated(None, "wrong_secret", record.name)
    if not record.enabled:
        return Authenticated(None, "admin_disabled", record.name)
    if record.last_used_at is None or at - record.last_used_at >= TOUCH_EVERY:
        with storage.unit_of_work() as uow:
            _store(uow).touch(record.name, at=at)
    return Authenticated(record.principal)
