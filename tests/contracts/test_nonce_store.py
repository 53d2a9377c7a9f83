"""Contract of NonceStore: in-process, and SQL on SQLite and on a real PostgreSQL.

Every nonce is bound to a purpose (issue 7 finding 11): consumed for another purpose it is
unknown AND stays live. Redis (used when configured) joins the ``store`` parametrization;
it expires keys by the server's clock, so its expiry is tested in real (milli)seconds.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mdm_core.domain.infra_errors import InfraError
from mdm_core.redis_backends.client import connect_redis
from mdm_core.storage.sql.database import Database
from posture_gateway.access.nonces import InProcessNonceStore, NonceKind, NonceStore, nonce_purpose
from posture_gateway.oidc.redis_nonces import RedisNonceStore
from posture_gateway.oidc.sql_nonces import SqlNonceStore
from tests.conftest import _fresh_postgres_db

LOGIN = nonce_purpose(NonceKind.LOGIN_DEVICE, audience="https://gw.example")
API = nonce_purpose(NonceKind.API_DECISION, audience="https://gw.example/api/v1/decision")


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["inprocess", "sql-sqlite", "sql-postgres", "redis"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[NonceStore, Clock | None]]:
    if request.param == "inprocess":
        yield InProcessNonceStore(), None
        return
    if request.param == "redis":
        client = connect_redis(request.getfixturevalue("redis_url"))
        yield RedisNonceStore(client, prefix=f"t:{uuid.uuid4().hex}:"), None
        client.close()
        return
    if request.param == "sql-sqlite":
        database = Database(f"sqlite:///{tmp_path}/nonces.sqlite3")
    else:
        database = Database(_fresh_postgres_db(request.getfixturevalue("postgres_server_url")))
    database.migrate()  # the gateway tables come from the one migration chain
    clock = Clock()
    try:
        yield SqlNonceStore(database, clock=clock), clock
    finally:
        database.dispose()


def test_single_use(store: tuple[NonceStore, Clock | None]) -> None:
    nonces, _ = store
    a = nonces.issue(timedelta(seconds=30), purpose=LOGIN)
    b = nonces.issue(timedelta(seconds=30), purpose=LOGIN)
    assert a != b and len(a) >= 40
    assert nonces.consume(a, purpose=LOGIN) is True
    assert nonces.consume(a, purpose=LOGIN) is False
    assert nonces.consume(b, purpose=LOGIN) is True
    assert nonces.consume("never-issued", purpose=LOGIN) is False
    assert nonces.consume("", purpose=LOGIN) is False


def test_expiry(store: tuple[NonceStore, Clock | None]) -> None:
    nonces, clock = store
    if clock is None:
        nonces = InProcessNonceStore(clock=lambda: tick[0])
        tick = [0.0]
        nonce = nonces.issue(timedelta(seconds=30), purpose=API)
        tick[0] = 30.0
    else:
        nonce = nonces.issue(timedelta(seconds=30), purpose=API)
        clock.now += timedelta(seconds=30)
    assert nonces.consume(nonce, purpose=API) is False


def test_ttl_must_be_positive(store: tuple[NonceStore, Clock | None]) -> None:
    nonces, _ = store
    with pytest.raises(ValueError):
        nonces.issue(timedelta(0), purpose=LOGIN)


def test_a_purpose_is_required(store: tuple[NonceStore, Clock | None]) -> None:
    nonces, _ = store
    with pytest.raises(ValueError):
        nonces.issue(timedelta(seconds=30), purpose="")
    nonce = nonces.issue(timedelta(seconds=30), purpose=LOGIN)
    with pytest.raises(ValueError):
        nonces.consume(nonce, purpose="")
    assert nonces.consume(nonce, purpose=LOGIN) is True


def test_a_nonce_is_spent_only_for_its_own_purpose(store: tuple[NonceStore, Clock | None]) -> None:
    nonces, _ = store
    login = nonces.issue(timedelta(seconds=30), purpose=LOGIN)
    api = nonces.issue(timedelta(seconds=30), purpose=API)
    # the wrong door: refused, and NOT consumed
    assert nonces.consume(login, purpose=API) is False
    assert nonces.consume(api, purpose=LOGIN) is False
    other_audience = nonce_purpose(NonceKind.LOGIN_DEVICE, audience="https://evil.example")
    other_caller = nonce_purpose(
        NonceKind.API_DECISION, audience="https://gw.example/api/v1/decision", caller="x"
    )
    assert nonces.consume(login, purpose=other_audience) is False
    assert nonces.consume(api, purpose=other_caller) is False
    # the right door still works, once
    assert nonces.consume(login, purpose=LOGIN) is True
    assert nonces.consume(api, purpose=API) is True
    assert nonces.consume(login, purpose=LOGIN) is False
    assert nonces.consume(api, purpose=API) is False


def test_purposes_do_not_collide() -> None:
    with pytest.raises(ValueError):
        nonce_purpose(NonceKind.API_DECISION, audience="https://a\nx", caller="y")
    with pytest.raises(ValueError):
        nonce_purpose(NonceKind.API_DECISION, audience="")
    a = nonce_purpose(NonceKind.API_DECISION, audience="https://a", caller="b")
    b = nonce_purpose(NonceKind.API_DECISION, audience="https://ab", caller="")
    assert a != b


def test_concurrent_consume_has_one_winner(store: tuple[NonceStore, Clock | None]) -> None:
    nonces, _ = store
    nonce = nonces.issue(timedelta(seconds=30), purpose=API)
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def spend() -> None:
        barrier.wait()
        results.append(nonces.consume(nonce, purpose=API))

    threads = [threading.Thread(target=spend) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1


def test_sql_sweeps_expired(database: Database) -> None:
    from sqlalchemy import func, select

    from posture_gateway.oidc.tables import gateway_nonces

    clock = Clock()
    nonces = SqlNonceStore(database, clock=clock)
    for _ in range(63):
        nonces.issue(timedelta(seconds=1), purpose=LOGIN)
    clock.now += timedelta(seconds=2)
    nonces.issue(timedelta(seconds=1), purpose=API)  # the 64th issue sweeps
    with database.transaction() as conn:
        assert conn.execute(select(func.count()).select_from(gateway_nonces)).scalar() == 1


def test_redis_nonces_expire_by_themselves_and_fail_closed(redis_url: str) -> None:
    client = connect_redis(redis_url)
    nonces = RedisNonceStore(client, prefix=f"t:{uuid.uuid4().hex}:")
    short = nonces.issue(timedelta(milliseconds=150), purpose=LOGIN)
    live = nonces.issue(timedelta(seconds=30), purpose=LOGIN)
    time.sleep(0.4)
    assert nonces.consume(short, purpose=LOGIN) is False
    assert nonces.consume(live, purpose=LOGIN) is True
    client.close()
    dead = connect_redis("redis://127.0.0.1:1", timeout=0.2, retries=0)
    with pytest.raises(InfraError):
        RedisNonceStore(dead).issue(timedelta(seconds=30), purpose=LOGIN)
    with pytest.raises(InfraError):
        RedisNonceStore(dead).consume(live, purpose=LOGIN)
    with pytest.raises(ValueError):
        RedisNonceStore(None)  # type: ignore[arg-type]
