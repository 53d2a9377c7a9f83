"""Contract of NonceStore: in-process, and SQL on SQLite and on a real PostgreSQL.

(The Redis implementation, when it lands, joins the ``store`` parametrization.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mdm_core.storage.sql.database import Database
from posture_gateway.nonces import InProcessNonceStore, NonceStore
from posture_gateway.oidc.sql_grants import create_tables
from posture_gateway.oidc.sql_nonces import SqlNonceStore
from tests.conftest import _fresh_postgres_db


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["inprocess", "sql-sqlite", "sql-postgres"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[NonceStore, Clock | None]]:
    if request.param == "inprocess":
        yield InProcessNonceStore(), None
        return
    if request.param == "sql-sqlite":
        database = Database(f"sqlite:///{tmp_path}/nonces.sqlite3")
    else:
        database = Database(_fresh_postgres_db(request.getfixturevalue("postgres_server_url")))
    create_tables(database)
    clock = Clock()
    try:
        yield SqlNonceStore(database, clock=clock), clock
    finally:
        database.dispose()


def test_single_use(store: tuple[NonceStore, Clock | None]) -> None:
    nonces, _ = store
    a, b = nonces.issue(timedelta(seconds=30)), nonces.issue(timedelta(seconds=30))
    assert a != b and len(a) >= 40
    assert nonces.consume(a) is True
    assert nonces.consume(a) is False
    assert nonces.consume(b) is True
    assert nonces.consume("never-issued") is False
    assert nonces.consume("") is False


def test_expiry(store: tuple[NonceStore, Clock | None]) -> None:
    nonces, clock = store
    if clock is None:
        nonces = InProcessNonceStore(clock=lambda: tick[0])
        tick = [0.0]
        nonce = nonces.issue(timedelta(seconds=30))
        tick[0] = 30.0
    else:
        nonce = nonces.issue(timedelta(seconds=30))
        clock.now += timedelta(seconds=30)
    assert nonces.consume(nonce) is False


def test_ttl_must_be_positive(store: tuple[NonceStore, Clock | None]) -> None:
    nonces, _ = store
    with pytest.raises(ValueError):
        nonces.issue(timedelta(0))


def test_concurrent_consume_has_one_winner(store: tuple[NonceStore, Clock | None]) -> None:
    nonces, _ = store
    nonce = nonces.issue(timedelta(seconds=30))
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def spend() -> None:
        barrier.wait()
        results.append(nonces.consume(nonce))

    threads = [threading.Thread(target=spend) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1


def test_sql_sweeps_expired(database: Database) -> None:
    from sqlalchemy import func, select

    from posture_gateway.oidc.tables import gateway_nonces

    create_tables(database)
    clock = Clock()
    nonces = SqlNonceStore(database, clock=clock)
    for _ in range(63):
        nonces.issue(timedelta(seconds=1))
    clock.now += timedelta(seconds=2)
    nonces.issue(timedelta(seconds=1))  # the 64th issue sweeps
    with database.transaction() as conn:
        assert conn.execute(select(func.count()).select_from(gateway_nonces)).scalar() == 1
