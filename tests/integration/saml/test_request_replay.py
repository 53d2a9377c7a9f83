"""The AuthnRequest replay guard on every backend the deployments use: SQLite (the embedded
default), PostgreSQL and Redis. An ID is accepted once per SP, whoever asks (two guards on
one store stand for two processes), with one winner under concurrency; the same ID from
another SP is another request; a failing store raises (the SSO view then refuses)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from mdm_core.storage.sql.database import Database
from posture_gateway.saml.replay import RequestReplayGuard, replay_key

__all__: list[str] = []


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def guards(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[RequestReplayGuard, RequestReplayGuard]]:
    if request.param == "sqlite":
        database: Database = request.getfixturevalue("sqlite_database")
        yield RequestReplayGuard(database), RequestReplayGuard(database)
        return
    if request.param == "postgres":
        from tests.conftest import _fresh_postgres_db

        db = Database(_fresh_postgres_db(request.getfixturevalue("postgres_server_url")))
        db.migrate()
        try:
            yield RequestReplayGuard(db), RequestReplayGuard(db)
        finally:
            db.dispose()
        return
    database = request.getfixturevalue("sqlite_database")  # unused: Redis decides
    url = request.getfixturevalue("redis_url")
    yield (
        RequestReplayGuard.for_deployment(database, url),
        RequestReplayGuard.for_deployment(database, url),
    )


def _until() -> datetime:
    return datetime.now(UTC) + timedelta(minutes=5)


def test_an_id_is_accepted_once_by_every_process(
    guards: tuple[RequestReplayGuard, RequestReplayGuard],
) -> None:
    first, second = guards
    request_id = "_" + uuid.uuid4().hex
    assert first.first_use("urn:sp:a", request_id, _until()) is True
    assert second.first_use("urn:sp:a", request_id, _until()) is False  # another process
    assert first.first_use("urn:sp:a", request_id, _until()) is False
    assert first.first_use("urn:sp:b", request_id, _until()) is True  # another SP's request
    assert first.first_use("urn:sp:a", "", _until()) is False  # no ID: never accepted


def test_concurrent_uses_have_one_winner(
    guards: tuple[RequestReplayGuard, RequestReplayGuard],
) -> None:
    request_id = "_" + uuid.uuid4().hex
    barrier = threading.Barrier(4)
    results: list[bool] = []
    lock = threading.Lock()

    def use(guard: RequestReplayGuard) -> None:
        barrier.wait()
        won = guard.first_use("urn:sp:a", request_id, _until())
        with lock:
            results.append(won)

    threads = [threading.Thread(target=use, args=(guards[i % 2],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [False, False, False, True]


def test_the_key_is_bounded_whatever_the_request_says() -> None:
    key = replay_key("urn:sp:" + "x" * 5000, "_" + "y" * 5000)
    assert len(key) <= 128 and key.startswith("saml-authn:")
    assert replay_key("a", "b\nc") != replay_key("a\nb", "c")


def test_a_failing_store_raises() -> None:
    broken = RequestReplayGuard(Database("sqlite:////nonexistent-dir/x.sqlite3"))
    with pytest.raises(Exception):  # noqa: B017 - any store error: the caller refuses (503)
        broken.first_use("urn:sp:a", "_1", _until())
