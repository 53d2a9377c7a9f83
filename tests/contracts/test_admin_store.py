"""The named admins' store and service on SQLite and PostgreSQL: tokens stored as hashes,
found by id, refused when forged, rotated or disabled; ``last_used_at`` written at most once
a minute; every change audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.tables import audit_log
from mdm_core.storage.sql.uow import SqlStorage
from posture_gateway.admin.principals import AdminPrincipal, Role
from posture_gateway.admin.service import (
    InvalidAdminName,
    add_admin,
    authenticate_token,
    disable_admin,
    list_admins,
    rotate_admin,
)
from posture_gateway.admin.store import AdminExists, UnknownAdmin
from posture_gateway.admin.tables import admins
from posture_gateway.admin.tokens import parse_token

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_a_token_is_random_shown_once_and_stored_as_a_hash(database: Database) -> None:
    storage = SqlStorage(database)
    record, token = add_admin(storage, "alice", Role.ADMIN, actor="operator:root", now=T0)
    parsed = parse_token(token.value)
    assert parsed is not None
    token_id, secret = parsed
    assert len(secret) == 43  # 256 bits, base64url
    with database.engine.connect() as conn:
        row = conn.execute(select(admins)).one()
    assert row.token_id == token_id and secret not in str(tuple(row))
    assert row.token_hash != secret and len(row.token_hash) == 64
    assert record.role is Role.ADMIN and record.created_by == "operator:root"
    assert "hash" not in repr(record) and secret not in repr(token)
    _, other = add_admin(storage, "bob", Role.HELPDESK, actor="operator:root", now=T0)
    assert other.value != token.value


def test_authenticate_finds_the_admin_and_refuses_forgeries(database: Database) -> None:
    storage = SqlStorage(database)
    _, token = add_admin(storage, "alice", Role.HELPDESK, actor="operator:root", now=T0)
    ok = authenticate_token(storage, token.value, now=T0)
    assert ok.principal == AdminPrincipal("alice", Role.HELPDESK)
    forged = token.value[:-4] + ("AAAA" if not token.value.endswith("AAAA") else "BBBB")
    refused = authenticate_token(storage, forged, now=T0)
    assert refused.principal is None and refused.refusal == "wrong_secret"
    assert refused.claimed == "alice"
    assert authenticate_token(storage, "pga_0000000000000000_" + "A" * 43).refusal == (
        "unknown_token"
    )
    assert authenticate_token(storage, "pga_short").refusal == "malformed_token"
    assert authenticate_token(storage, token.value + "x").refusal == "malformed_token"


def test_disabled_and_rotated_tokens_are_refused(database: Database) -> None:
    storage = SqlStorage(database)
    _, token = add_admin(storage, "alice", Role.ADMIN, actor="operator:root", now=T0)
    _, fresh = rotate_admin(storage, "alice", actor="operator:root", now=T0)
    assert authenticate_token(storage, token.value).refusal == "unknown_token"
    assert authenticate_token(storage, fresh.value).principal is not None
    disabled = disable_admin(storage, "alice", actor="operator:root", now=T0)
    assert disabled.disabled_at == T0 and not disabled.enabled
    outcome = authenticate_token(storage, fresh.value)
    assert outcome.principal is None and outcome.refusal == "admin_disabled"
    # disabling again keeps the first time
    assert disable_admin(storage, "alice", actor="operator:root").disabled_at == T0
    with database.engine.connect() as conn:
        actions = [
            r.action
            for r in conn.execute(
                select(audit_log)
                .where(audit_log.c.subject == "admin:alice")
                .order_by(audit_log.c.id)
            )
        ]
    assert actions == ["admin.added", "admin.token_rotated", "admin.disabled", "admin.disabled"]


def test_names_roles_and_unknown_admins(database: Database) -> None:
    storage = SqlStorage(database)
    add_admin(storage, "alice", Role.ADMIN, actor="operator:root")
    with pytest.raises(AdminExists):
        add_admin(storage, "alice", Role.HELPDESK, actor="operator:root")
    for bad in ("", "Alice", "-x", "a" * 65, "a b", "admin:x"):
        with pytest.raises(InvalidAdminName):
            add_admin(storage, bad, Role.ADMIN, actor="operator:root")
    with pytest.raises(UnknownAdmin):
        disable_admin(storage, "nobody", actor="operator:root")
    with pytest.raises(UnknownAdmin):
        rotate_admin(storage, "nobody", actor="operator:root")
    assert [a.name for a in list_admins(storage)] == ["alice"]


def test_last_used_is_written_at_most_once_a_minute(database: Database) -> None:
    storage = SqlStorage(database)
    _, token = add_admin(storage, "alice", Role.ADMIN, actor="operator:root", now=T0)
    for seconds in (0, 10, 59):
        authenticate_token(storage, token.value, now=T0 + timedelta(seconds=seconds))
    assert list_admins(storage)[0].last_used_at == T0
    authenticate_token(storage, token.value, now=T0 + timedelta(seconds=61))
    assert list_admins(storage)[0].last_used_at == T0 + timedelta(seconds=61)


def test_roles_include_each_other_one_way() -> None:
    admin, helpdesk = AdminPrincipal("a", Role.ADMIN), AdminPrincipal("h", Role.HELPDESK)
    assert admin.may(Role.ADMIN) and admin.may(Role.HELPDESK)
    assert helpdesk.may(Role.HELPDESK) and not helpdesk.may(Role.ADMIN)
    assert admin.actor == "admin:a"
