"""Contract of LoginTransactionStore: SQL on SQLite and on a real PostgreSQL, and Redis.

Ids are unguessable and not stored in the clear; data round-trips; ``put`` keeps the expiry
and fails on a transaction that is gone; ``take`` is single use even under concurrency;
oversized data is refused and nothing is stored.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from mdm_core.redis_backends.client import connect_redis
from mdm_core.storage.sql.database import Database
from posture_gateway.login.transactions import (
    MAX_TRANSACTION_BYTES,
    LoginTransactionStore,
    RedisLoginTransactionStore,
    SqlLoginTransactionStore,
    TransactionTooLarge,
)
from posture_gateway.oidc.tables import gateway_login_transactions
from tests.conftest import _fresh_postgres_db


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class Backend:
    def __init__(self, store: LoginTransactionStore, clock: Clock | None, db: Database | None):
        self.store, self.clock, self.db = store, clock, db

    def expire(self, ttl_s: int) -> None:
        """Let a transaction created with ``ttl_s`` expire."""
        if self.clock is not None:
            self.clock.now += timedelta(seconds=ttl_s + 1)
        else:
            time.sleep(ttl_s + 1.1)  # Redis expires by its own clock (EXAT, whole seconds)


@pytest.fixture(params=["sql-sqlite", "sql-postgres", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "redis":
        client = connect_redis(request.getfixturevalue("redis_url"))
        yield Backend(
            RedisLoginTransactionStore(client, prefix=f"t:{uuid.uuid4().hex}:"), None, None
        )
        client.close()
        return
    if request.param == "sql-sqlite":
        database = Database(f"sqlite:///{tmp_path}/tx.sqlite3")
    else:
        database = Database(_fresh_postgres_db(request.getfixturevalue("postgres_server_url")))
    database.migrate()  # the gateway tables come from the one migration chain
    clock = Clock()
    try:
        yield Backend(SqlLoginTransactionStore(database, clock=clock), clock, database)
    finally:
        database.dispose()


DATA = {"id": "login-1", "params": {"state": "é" * 10, "scope": "openid"}, "user": None}


def test_round_trip_put_and_take(backend: Backend) -> None:
    store = backend.store
    tx_id = store.create(DATA, timedelta(minutes=5))
    assert len(tx_id) >= 43 and tx_id != store.create(DATA, timedelta(minutes=5))
    assert store.get(tx_id) == DATA
    changed = {**DATA, "user": {"user_id": "u-alice"}}
    assert store.put(tx_id, changed) is True
    assert store.get(tx_id) == changed
    assert store.take(tx_id) == changed
    assert store.take(tx_id) is None
    assert store.get(tx_id) is None
    assert store.put(tx_id, DATA) is False  # gone: not re-created


def test_unknown_and_empty_ids(backend: Backend) -> None:
    store = backend.store
    for tx_id in ("", "never-created"):
        assert store.get(tx_id) is None
        assert store.take(tx_id) is None
        assert store.put(tx_id, DATA) is False


def test_expiry_and_put_keeps_it(backend: Backend) -> None:
    store = backend.store
    tx_id = store.create(DATA, timedelta(seconds=1))
    assert store.put(tx_id, {**DATA, "user": "x"}) is True  # does not extend the life
    backend.expire(1)
    assert store.get(tx_id) is None
    assert store.take(tx_id) is None
    assert store.put(tx_id, DATA) is False


def test_ids_are_not_stored_in_the_clear(backend: Backend) -> None:
    tx_id = backend.store.create(DATA, timedelta(minutes=5))
    if backend.db is not None:
        with backend.db.engine.connect() as conn:
            keys = [r.tx_hash for r in conn.execute(select(gateway_login_transactions))]
        assert keys and tx_id not in keys and all(len(k) == 64 for k in keys)


def test_oversized_data_is_refused_and_not_stored(backend: Backend) -> None:
    store = backend.store
    with pytest.raises(TransactionTooLarge):
        store.create({"state": "x" * MAX_TRANSACTION_BYTES}, timedelta(minutes=5))
    tx_id = store.create(DATA, timedelta(minutes=5))
    with pytest.raises(TransactionTooLarge):
        store.put(tx_id, {"state": "x" * MAX_TRANSACTION_BYTES})
    assert store.get(tx_id) == DATA
    if backend.db is not None:
        with backend.db.engine.connect() as conn:
            assert len(list(conn.execute(select(gateway_login_transactions)))) == 1


def test_concurrent_takes_have_one_winner(backend: Backend) -> None:
    store = backend.store
    tx_id = store.create(DATA, timedelta(minutes=5))
    results: list[object] = []
    barrier = threading.Barrier(8)

    def take() -> None:
        barrier.wait()
        try:
            results.append(store.take(tx_id))
        except Exception as exc:  # a serialisation failure is a loss, never a second win
            results.append(exc)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sum(1 for r in results if r == DATA) == 1
