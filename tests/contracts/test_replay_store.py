"""Contract: ReplayStore on SQLite, PostgreSQL (SqlReplayStore) and Redis (RedisReplayStore)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mdm_core.domain.infra_errors import InfraUnavailable
from mdm_core.redis_backends.client import connect_redis
from mdm_core.redis_backends.replay import RedisReplayStore
from mdm_core.storage.replay import ReplayStore
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage


class _PerCallSql:
    """SqlReplayStore with each call in its own committed unit of work."""

    def __init__(self, storage: SqlStorage) -> None:
        self.storage = storage

    def remember(self, jti: str, expires_at: datetime) -> bool:
        with self.storage.unit_of_work() as uow:
            return uow.replay.remember(jti, expires_at)

    def purge_expired(self, now: datetime) -> int:
        with self.storage.unit_of_work() as uow:
            return uow.replay.purge_expired(now)


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def replay(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReplayStore]:
    if request.param == "redis":
        client = connect_redis(request.getfixturevalue("redis_url"))
        try:
            yield RedisReplayStore(client, prefix=f"test:{uuid.uuid4().hex}:")
        finally:
            client.close()
        return
    database: Database = request.getfixturevalue(f"_{request.param}_db")
    yield _PerCallSql(SqlStorage(database))


@pytest.fixture
def _sqlite_db(sqlite_database: Database) -> Database:
    return sqlite_database


@pytest.fixture
def _postgres_db(postgres_server_url: str) -> Iterator[Database]:
    from tests.conftest import _fresh_postgres_db

    db = Database(_fresh_postgres_db(postgres_server_url))
    db.migrate()
    try:
        yield db
    finally:
        db.dispose()


def _future() -> datetime:
    return datetime.now(UTC) + timedelta(minutes=5)


def test_first_time_true_then_false(replay: ReplayStore) -> None:
    jti = uuid.uuid4().hex
    assert replay.remember(jti, _future()) is True
    assert replay.remember(jti, _future()) is False
    assert replay.remember(uuid.uuid4().hex, _future()) is True


def test_concurrent_remember_has_one_winner(replay: ReplayStore) -> None:
    jti = uuid.uuid4().hex
    barrier = threading.Barrier(4)
    results: list[bool] = []
    errors: list[BaseException] = []

    def go() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(replay.remember(jti, _future()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert sorted(results) == [False, False, False, True]


def test_purge_forgets_only_expired(replay: ReplayStore) -> None:
    live = uuid.uuid4().hex
    assert replay.remember(live, _future()) is True
    purged = replay.purge_expired(datetime.now(UTC))
    assert purged >= 0
    assert replay.remember(live, _future()) is False  # still remembered


def test_sql_purge_removes_expired_rows(sqlite_database: Database) -> None:
    store = _PerCallSql(SqlStorage(sqlite_database))
    now = datetime.now(UTC)
    assert store.remember("old", now + timedelta(seconds=1))
    assert store.remember("new", now + timedelta(minutes=5))
    assert store.purge_expired(now + timedelta(seconds=2)) == 1
    assert store.remember("old", now + timedelta(minutes=5)) is True  # forgotten
    assert store.remember("new", now + timedelta(minutes=5)) is False


def test_redis_entry_expires_with_margin(redis_url: str) -> None:
    client = connect_redis(redis_url)
    try:
        store = RedisReplayStore(client, prefix="m:", margin=timedelta(seconds=30))
        expires = datetime.now(UTC) + timedelta(seconds=60)
        assert store.remember("x-" + uuid.uuid4().hex, expires)
        keys = client.keys("m:*")
        ttl = client.ttl(keys[0])
        assert 80 <= ttl <= 91  # 60 s + 30 s margin, rounded up
    finally:
        client.close()


def test_redis_store_needs_timeouts_and_fails_closed(redis_url: str) -> None:
    from redis import Redis

    with pytest.raises(ValueError):
        RedisReplayStore(Redis.from_url(redis_url))  # no socket timeout: refused
    from tests.services import free_port

    dead = connect_redis(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2, retries=0)
    with pytest.raises(InfraUnavailable):
        RedisReplayStore(dead).remember("jti", _future())


def test_redis_remember_spending_is_one_round_trip_with_both_answers(redis_url: str) -> None:
    client = connect_redis(redis_url)
    try:
        store = RedisReplayStore(client, prefix="s:")
        nonce_key = "n:" + uuid.uuid4().hex
        client.set(nonce_key, b"", px=60_000)
        jti = uuid.uuid4().hex
        assert store.remember_spending(jti, _future(), nonce_key) == (True, True)
        # spent and remembered: a second try finds neither the nonce nor a fresh jti
        assert store.remember_spending(jti, _future(), nonce_key) == (False, False)
        assert client.exists(nonce_key) == 0
        assert store.remember(jti, _future()) is False  # the jti is remembered like remember()
        other = uuid.uuid4().hex  # an unknown key spends nothing, the jti is still recorded
        assert store.remember_spending(other, _future(), "n:unknown") == (False, True)
    finally:
        client.close()


def test_redis_remember_spending_fails_closed(redis_url: str) -> None:
    from tests.services import free_port

    dead = connect_redis(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2, retries=0)
    with pytest.raises(InfraUnavailable):
        RedisReplayStore(dead).remember_spending("jti", _future(), "n:x")
