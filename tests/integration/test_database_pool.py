"""PostgreSQL pool without per-checkout pings: idle connections are pinged, dead ones replaced."""

from __future__ import annotations

import time

from sqlalchemy import event, text

from mdm_core.storage.sql.database import IDLE_PING_AFTER_S, Database


def _backend_pid(db: Database) -> int:
    with db.transaction() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_busy_connection_is_reused_without_a_ping(postgres_server_url: str) -> None:
    db = Database(postgres_server_url, pool_size=1)
    try:
        first = _backend_pid(db)
        assert _backend_pid(db) == first  # same pooled connection, handed out unpinged
    finally:
        db.dispose()


def test_idle_connection_killed_by_the_server_is_replaced(postgres_server_url: str) -> None:
    db = Database(postgres_server_url, pool_size=1)
    killer = Database(postgres_server_url, pool_size=1)
    try:
        victim = _backend_pid(db)
        with killer.transaction() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": victim}).scalar()
        # make the pooled connection look idle for longer than the ping threshold
        pool = db.engine.pool
        records = list(pool._pool.queue)  # type: ignore[attr-defined]
        assert records, "the connection went back to the pool"
        for record in records:
            record.info["idle_since"] = time.monotonic() - IDLE_PING_AFTER_S - 1
        replacement = _backend_pid(db)  # no error: the dead one was pinged and discarded
        assert replacement != victim
        assert _backend_pid(db) == replacement
    finally:
        db.dispose()
        killer.dispose()


def test_idle_connection_still_alive_is_kept(postgres_server_url: str) -> None:
    db = Database(postgres_server_url, pool_size=1)
    try:
        first = _backend_pid(db)
        for record in list(db.engine.pool._pool.queue):  # type: ignore[attr-defined]
            record.info["idle_since"] = time.monotonic() - IDLE_PING_AFTER_S - 1
        assert _backend_pid(db) == first
    finally:
        db.dispose()


def test_autocommit_reads_have_their_own_pool_and_no_transaction(postgres_server_url: str) -> None:
    db = Database(postgres_server_url, pool_size=1)
    try:
        with db.autocommit_cursor() as cursor:
            cursor.execute("SELECT pg_current_xact_id_if_assigned() IS NULL, 1")
            assert cursor.fetchone() == (True, 1)
            assert cursor.connection.autocommit is True
        with db.transaction() as conn:  # the main pool never hands out an autocommit one
            assert conn.connection.dbapi_connection.autocommit is False  # type: ignore[union-attr]
        assert db.autocommit_engine is not None and db.autocommit_engine is not db.engine
    finally:
        db.dispose()


def test_a_shared_transaction_opens_at_its_first_step(postgres_server_url: str) -> None:
    db = Database(postgres_server_url, pool_size=1)
    try:
        checkouts: list[object] = []

        event.listen(db.engine, "checkout", lambda *a: checkouts.append(a))
        with db.shared_transaction():
            pass  # no step: no connection
        assert checkouts == []
        with db.shared_transaction():
            first = _backend_pid(db)
            assert _backend_pid(db) == first  # every step: the same transaction
        assert len(checkouts) == 1
    finally:
        db.dispose()
