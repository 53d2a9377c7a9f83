"""Contract of the SSO session store and its unit-of-work revoker, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from mdm_core.storage.credentials import SESSIONS
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage
from posture_gateway.oidc.grants import GrantSubject, TokenRecord
from posture_gateway.oidc.sql_grants import ConnectionTokenRevoker, SqlTokenStore
from posture_gateway.oidc.tables import gateway_sso_sessions
from posture_gateway.sso.sql import ConnectionSessionRevoker, SqlSessionStore, cookie_digest
from posture_gateway.sso.store import NewSession

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
IDLE, ABSOLUTE = timedelta(hours=2), timedelta(hours=12)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(database: Database, clock: Clock) -> SqlSessionStore:
    return SqlSessionStore(database, idle_ttl=IDLE, absolute_ttl=ABSOLUTE, clock=clock)


def _new(user: str = "alice", device: str = "d1") -> NewSession:
    return NewSession(
        user_id=user,
        device_id=device,
        auth_time=T0,
        acr="urn:posture:device",
        amr=("pwd", "hwk"),
        data={"username": user},
    )


def test_create_then_find_live_and_the_cookie_is_stored_only_as_a_digest(
    store: SqlSessionStore, database: Database
) -> None:
    cookie, created = store.create(_new())
    assert len(cookie) >= 43 and created.public_id != cookie
    found = store.find_live(cookie)
    assert found is not None
    assert (found.public_id, found.user_id, found.device_id) == (created.public_id, "alice", "d1")
    assert found.amr == ("pwd", "hwk") and found.acr == "urn:posture:device"
    assert found.auth_time == T0 and found.data == {"username": "alice"}
    with database.transaction() as conn:
        keys = [r.id_hash for r in conn.execute(select(gateway_sso_sessions.c.id_hash))]
    assert keys == [cookie_digest(cookie)]
    second, _ = store.create(_new())
    assert second != cookie  # fresh random ids


@pytest.mark.parametrize("value", ["", "nope", "x" * 65, "\x00"])
def test_unknown_or_malformed_cookies_find_nothing(store: SqlSessionStore, value: str) -> None:
    store.create(_new())
    assert store.find_live(value) is None


def test_idle_expiry_slides_with_use_but_never_past_the_absolute_one(
    store: SqlSessionStore, clock: Clock
) -> None:
    cookie, session = store.create(_new())
    assert session.idle_expires_at == T0 + IDLE
    assert session.absolute_expires_at == T0 + ABSOLUTE
    for hours in range(1, 12):  # used every hour: stays alive until the absolute expiry
        clock.now = T0 + timedelta(hours=hours)
        found = store.find_live(cookie)
        assert found is not None, hours
        assert found.last_seen_at == clock.now
        assert found.idle_expires_at == min(clock.now + IDLE, T0 + ABSOLUTE)
    clock.now = T0 + ABSOLUTE
    assert store.find_live(cookie) is None  # absolute expiry, however recently used
    idle_cookie, _ = store.create(_new())
    clock.now += IDLE
    assert store.find_live(idle_cookie) is None  # not used for the idle time


def test_revoke_by_exactly_one_selector_and_the_tokens_of_the_session(
    store: SqlSessionStore, database: Database
) -> None:
    tokens = SqlTokenStore(database)
    c1, s1 = store.create(_new("alice", "d1"))
    c2, s2 = store.create(_new("alice", "d2"))
    c3, s3 = store.create(_new("bob", "d3"))
    for jti, sid in (("t1", s1.public_id), ("t2", s2.public_id), ("t-none", None)):
        tokens.save(
            TokenRecord(
                id=jti,
                client_id="app",
                scope="openid",
                subject=GrantSubject("alice", 1, "", (), device_id="d1", sid=sid),
                family_id=jti,
                issued_at=T0,
                access_expires_at=T0 + timedelta(minutes=10),
            )
        )
    with pytest.raises(ValueError):
        store.revoke(reason="x")
    with pytest.raises(ValueError):
        store.revoke(reason="x", user_id="alice", device_id="d1")
    assert store.revoke(reason="logout", public_id=s1.public_id) == 1
    assert store.revoke(reason="logout", public_id=s1.public_id) == 0  # already ended
    assert store.revoke(reason="x", public_id="unknown") == 0
    assert store.find_live(c1) is None and store.find_live(c2) is not None
    assert [
        (r.id, r.revoked_at is not None) for r in map(tokens.get, ["t1", "t2", "t-none"]) if r
    ] == [
        ("t1", True),
        ("t2", False),
        ("t-none", False),
    ]
    assert store.revoke(reason="admin", user_id="alice") == 1  # d2's; d1's already ended
    assert store.find_live(c2) is None and store.find_live(c3) is not None
    record = tokens.get("t2")
    assert record is not None and record.revoked_at is not None
    assert store.revoke(reason="admin", device_id="d3") == 1
    assert store.find_live(c3) is None
    ended = store.list(user_id="alice")
    assert {s.public_id: s.revoked_reason for s in ended} == {
        s1.public_id: "logout",
        s2.public_id: "admin",
    }
    assert store.list(device_id="d3")[0].public_id == s3.public_id
    assert store.list(user_id="nobody") == []
    with pytest.raises(ValueError):
        store.list()


def test_list_is_newest_first_and_says_which_are_live(store: SqlSessionStore, clock: Clock) -> None:
    _, old = store.create(_new())
    clock.now = T0 + timedelta(minutes=5)
    _, new = store.create(_new())
    listed = store.list(user_id="alice")
    assert [s.public_id for s in listed] == [new.public_id, old.public_id]
    clock.now = T0 + IDLE + timedelta(minutes=1)
    assert [s.live(clock.now) for s in store.list(device_id="d1")] == [True, False]
    assert store.live_count() == 1
    view = listed[0].to_json(clock.now)
    assert view["id"] == new.public_id and view["live"] is True and "cookie" not in view


def test_unit_of_work_revoker_ends_sessions_with_the_transaction(
    store: SqlSessionStore, database: Database, clock: Clock
) -> None:
    c1, _ = store.create(_new("alice", "d1"))
    c2, _ = store.create(_new("alice", "d2"))
    another, _ = store.create(_new("alice", "d1"))
    clock.now = T0 + timedelta(minutes=1)
    c3, _ = store.create(_new("alice", "d1"))
    storage = SqlStorage(database)
    storage.add_credential_revoker(ConnectionTokenRevoker)
    storage.add_credential_revoker(ConnectionSessionRevoker, kind=SESSIONS)
    with pytest.raises(RuntimeError), storage.unit_of_work() as uow:
        assert (
            uow.credentials.device("d1", reason="device_quarantined", at=clock.now).of(SESSIONS)
            == 3
        )
        raise RuntimeError("the quarantine failed")
    assert store.find_live(c1) is not None  # rolled back with it
    with storage.unit_of_work() as uow:
        revoked = uow.credentials.device("d1", reason="device_quarantined", at=clock.now)
    assert revoked.of(SESSIONS) == 3 and revoked.count == 3
    assert store.find_live(c1) is None and store.find_live(c3) is None
    assert store.find_live(another) is None and store.find_live(c2) is not None
    with storage.unit_of_work() as uow:
        assert uow.credentials.device("d1", reason="again", at=clock.now).count == 0
        assert uow.credentials.user("alice", reason="user_disabled", at=clock.now).of(SESSIONS) == 1
    assert store.find_live(c2) is None
    assert {s.revoked_reason for s in store.list(user_id="alice")} == {
        "device_quarantined",
        "user_disabled",
    }


def test_constructors_refuse_nothing(database: Database) -> None:
    with pytest.raises(ValueError):
        SqlSessionStore(None, idle_ttl=IDLE, absolute_ttl=ABSOLUTE)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SqlSessionStore(database, idle_ttl=timedelta(0), absolute_ttl=ABSOLUTE)
    with pytest.raises(ValueError):
        ConnectionSessionRevoker(None)  # type: ignore[arg-type]
    store = SqlSessionStore(database, idle_ttl=IDLE, absolute_ttl=ABSOLUTE)
    with pytest.raises(ValueError):
        store.create(NewSession("alice", "", T0, "", ()))
