"""The signals transmitter's durable queue on SQLite and PostgreSQL: rows written by the outbox
listener in the state change's own transaction, subject filtering, claiming with leases (and
``SKIP LOCKED``: two workers never take the same row), paused streams holding and disabled
streams dropping, push outcomes (202, retry with backoff, 400 recorded, attempts exhausted),
poll acknowledgement."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from mdm_core.bus.events import DomainEvent
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage
from posture_gateway.signals.delivery import DeliveryWorker, make_http
from posture_gateway.signals.settings import SignalsSettings
from posture_gateway.signals.store import SignalStore, StreamRow, open_store
from posture_gateway.signals.transmitter import Transmitter
from posture_gateway.signals.vocabulary import (
    CAEP_DEVICE_COMPLIANCE_CHANGE as DCC,
)
from posture_gateway.signals.vocabulary import CAEP_SESSION_REVOKED as REVOKED
from posture_gateway.signals.vocabulary import POLL, PUSH
from posture_gateway.signing.key_ring import KeyRing, generate_signing_key
from tests.helpers.set_sink import set_sink

ISSUER = "https://gw.example"


def _settings(**kw: Any) -> SignalsSettings:
    return SignalsSettings.model_validate(
        {
            "receivers": [{"client_id": "rx", "audience": "https://rx.example"}],
            "push": {"backoff_base": "1s", "backoff_max": "4s", "max_attempts": 3, "lease": "30s"},
            **kw,
        }
    )


@pytest.fixture
def storage(database: Database) -> SqlStorage:
    return SqlStorage(database)


@pytest.fixture
def transmitter(storage: SqlStorage) -> Transmitter:
    t = Transmitter(_settings(), issuer=ISSUER)
    storage.add_outbox_listener(t.outbox_listener)
    return t


@pytest.fixture
def keys() -> KeyRing:
    return KeyRing([generate_signing_key("RS256")])


@pytest.fixture
def worker(database: Database, keys: KeyRing) -> Iterator[DeliveryWorker]:
    settings = _settings()
    w = DeliveryWorker(settings, database=database, keys=keys, http=make_http(settings))
    yield w
    w.stop()
    w.http.close()


def _stream(
    database: Database,
    sid: str,
    *,
    method: str = PUSH,
    url: str = "https://rx.example/events",
    events: tuple[str, ...] = (DCC, REVOKED),
    status: str = "enabled",
    client: str = "rx",
) -> None:
    now = datetime.now(UTC)
    delivery: dict[str, Any] = {"method": method, "endpoint_url": url}
    config = {
        "aud": "https://rx.example",
        "events_requested": list(events),
        "events_delivered": list(events),
        "delivery": delivery,
    }
    with open_store(database) as store:
        store.create_stream(StreamRow(sid, client, config, status, None, now, now))


def _flip(device: str = "dev-1", user: str = "u-1") -> DomainEvent:
    return DomainEvent(
        type="compliance.changed",
        subject=device,
        payload={
            "device_id": device,
            "user_id": user,
            "state": "quarantined",
            "previous_state": "compliant",
        },
    )


def _states(database: Database, sid: str) -> dict[str, str]:
    with open_store(database) as store:
        return store.delivery_states(sid)


def _add(storage: SqlStorage, *events: DomainEvent) -> None:
    with storage.unit_of_work() as uow:
        uow.outbox.add(list(events))


def test_rows_commit_with_the_state_change_or_not_at_all(
    database: Database, storage: SqlStorage, transmitter: Transmitter
) -> None:
    _stream(database, "s-1")
    _stream(database, "s-revoked-only", events=(REVOKED,))
    _stream(database, "s-other-receiver", client="gone")  # receiver no longer configured
    with pytest.raises(RuntimeError), storage.unit_of_work() as uow:
        uow.outbox.add([_flip()])
        raise RuntimeError("the state change fails")
    assert _states(database, "s-1") == {}
    event = _flip()
    _add(storage, event, DomainEvent(type="posture.reported", subject="dev-1"))
    assert list(_states(database, "s-1").values()) == ["pending"]
    assert _states(database, "s-revoked-only") == {}
    assert _states(database, "s-other-receiver") == {}
    with database.transaction() as conn:
        store = SignalStore(conn, database.dialect)
        row = store.claim_push(datetime.now(UTC), datetime.now(UTC) + timedelta(seconds=5), 10)[0]
    claims = row.claims
    assert claims["txn"] == event.id and claims["iss"] == ISSUER
    assert claims["aud"] == "https://rx.example"
    assert claims["sub_id"] == {
        "format": "complex",
        "user": {"format": "iss_sub", "iss": ISSUER, "sub": "u-1"},  # no email known
        "device": {"format": "opaque", "id": "dev-1"},
    }
    assert claims["events"][DCC]["current_status"] == "not-compliant"


def test_no_flip_no_set(database: Database, storage: SqlStorage, transmitter: Transmitter) -> None:
    _stream(database, "s-1")
    same = replace(_flip(), payload={**_flip().payload, "previous_state": "noncompliant"})
    first = replace(_flip(), payload={**_flip().payload, "previous_state": None})
    _add(storage, same, first)
    assert _states(database, "s-1") == {}


def test_subject_filtering(database: Database, storage: SqlStorage) -> None:
    t = Transmitter(_settings(default_subjects="NONE"), issuer=ISSUER)
    storage.add_outbox_listener(t.outbox_listener)
    _stream(database, "s-none")
    now = datetime.now(UTC)
    _add(storage, _flip("dev-1"))
    assert _states(database, "s-none") == {}  # NONE: nothing until a subject is added
    with open_store(database) as store:
        store.put_subject("s-none", "opaque:dev-2", {"format": "opaque", "id": "dev-2"}, True, now)
        store.put_subject(
            "s-none",
            "device=opaque:dev-3&user=opaque:u-3",
            {"format": "complex"},
            True,
            now,
        )
        store.put_subject("s-none", "iss_sub:" + ISSUER + "|u-4", {}, True, now)
        store.put_subject("s-none", "opaque:dev-4", {}, False, now)  # removed wins
    _add(storage, _flip("dev-1"), _flip("dev-2"), _flip("dev-3", "u-3"), _flip("dev-3", "u-9"))
    _add(storage, _flip("dev-4", "u-4"), _flip("dev-5", "u-4"))
    with database.transaction() as conn:
        claimed = SignalStore(conn, database.dialect).claim_push(
            now + timedelta(seconds=1), now + timedelta(minutes=1), 100
        )
    devices = sorted(r.claims["sub_id"]["device"]["id"] for r in claimed)
    # dev-2 added; dev-3 only with u-3 (complex); dev-4 removed (wins over u-4 added);
    # dev-5 through its user u-4 (iss_sub)
    assert devices == ["dev-2", "dev-3", "dev-5"]


def test_claims_are_leased_and_paused_streams_hold(
    database: Database, storage: SqlStorage, transmitter: Transmitter
) -> None:
    _stream(database, "s-1")
    _stream(database, "s-paused", status="paused")
    _add(storage, _flip())
    now = datetime.now(UTC)
    with open_store(database) as store:
        first = store.claim_push(now, now + timedelta(seconds=30), 10)
        assert [r.stream_id for r in first] == ["s-1"] and first[0].attempts == 1
    with open_store(database) as store:
        assert store.claim_push(now, now + timedelta(seconds=30), 10) == []  # leased
    later = now + timedelta(seconds=31)
    with open_store(database) as store:
        again = store.claim_push(later, later + timedelta(seconds=30), 10)
        assert [r.id for r in again] == [first[0].id] and again[0].attempts == 2
        store.update_stream("s-paused", status="enabled", at=later)
    with open_store(database) as store:
        resumed = store.claim_push(later, later + timedelta(seconds=30), 10)
    assert [r.stream_id for r in resumed] == ["s-paused"]
    with open_store(database) as store:
        assert store.depth() == 2
        store.update_stream("s-paused", status="disabled", at=later)
        assert store.drop_pending("s-paused") == 1
        assert store.depth() == 1


@pytest.mark.parametrize("workers", [2])
def test_concurrent_claims_are_disjoint(
    database: Database, storage: SqlStorage, transmitter: Transmitter, workers: int
) -> None:
    _stream(database, "s-1")
    _add(storage, *[_flip(f"dev-{i}") for i in range(40)])
    now = datetime.now(UTC)
    got: list[list[int]] = []
    barrier = threading.Barrier(workers)

    def claim() -> None:
        barrier.wait()
        out: list[int] = []
        while True:
            with open_store(database) as store:
                rows = store.claim_push(now, now + timedelta(minutes=1), 5)
            if not rows:
                break
            out += [r.id for r in rows]
        got.append(out)

    threads = [threading.Thread(target=claim) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    ids = [i for batch in got for i in batch]
    assert len(ids) == 40 and len(set(ids)) == 40


def test_push_outcomes(
    database: Database,
    storage: SqlStorage,
    transmitter: Transmitter,
    worker: DeliveryWorker,
    keys: KeyRing,
) -> None:
    with set_sink(503, (400, {"err": "invalid_key", "description": "unknown kid"})) as sink:
        _stream(database, "s-1", url=sink.url)
        _add(storage, _flip("dev-1"))
        assert worker.run_once() == 1  # 503: retry later
        (jti,) = _states(database, "s-1")
        assert _states(database, "s-1") == {jti: "pending"}
        assert worker.run_once() == 0  # not due yet (backoff >= 0.5 s)
        assert worker.run_once(datetime.now(UTC) + timedelta(seconds=5)) == 1  # 400: failed
        assert _states(database, "s-1") == {jti: "failed"}
        with database.transaction() as conn:
            error = conn.exec_driver_sql("SELECT last_error FROM ssf_deliveries").scalar_one()
        assert "invalid_key" in error and "unknown kid" in error

        _add(storage, _flip("dev-2"))
        assert worker.run_once() == 1  # 202
        delivered = [j for j, s in _states(database, "s-1").items() if s == "delivered"]
        assert len(delivered) == 1
        last = sink.received[-1]
        assert last["content_type"] == "application/secevent+jwt"
        header = jwt.get_unverified_header(last["body"])
        assert header["typ"] == "secevent+jwt" and header["alg"] == "RS256"
        public = keys.active("RS256").public_key
        claims = jwt.decode(
            last["body"], public, algorithms=["RS256"], audience="https://rx.example"
        )
        assert claims["jti"] == delivered[0] and "sub" not in claims and "exp" not in claims


def test_attempts_are_bounded(
    database: Database, storage: SqlStorage, transmitter: Transmitter, worker: DeliveryWorker
) -> None:
    with set_sink(503, 503, 503, 503) as sink:
        _stream(database, "s-1", url=sink.url)
        _add(storage, _flip())
        at = datetime.now(UTC)
        for _ in range(3):
            assert worker.run_once(at) == 1
            at += timedelta(seconds=10)
        assert list(_states(database, "s-1").values()) == ["failed"]
        assert worker.run_once(at + timedelta(minutes=5)) == 0
        assert len(sink.received) == 3


def test_connection_refused_is_retried(
    database: Database, storage: SqlStorage, transmitter: Transmitter, worker: DeliveryWorker
) -> None:
    from tests.services import free_port

    _stream(database, "s-1", url=f"http://127.0.0.1:{free_port()}/nobody")
    _add(storage, _flip())
    assert worker.run_once() == 1
    assert list(_states(database, "s-1").values()) == ["pending"]


def test_poll_rows_ack_and_errors(
    database: Database, storage: SqlStorage, transmitter: Transmitter
) -> None:
    _stream(database, "s-poll", method=POLL, url=ISSUER + "/ssf/poll/s-poll")
    _add(storage, *[_flip(f"dev-{i}") for i in range(3)])
    with open_store(database) as store:
        rows, more = store.pending_poll("s-poll", 2)
        assert len(rows) == 2 and more
        assert store.claim_push(datetime.now(UTC), datetime.now(UTC), 10) == []  # not push
    now = datetime.now(UTC)
    with open_store(database) as store:
        created = store.settle_poll(
            "s-poll", [rows[0].jti, "unknown-jti"], {rows[1].jti: "invalid_issuer: x"}, now
        )
        assert len(created) == 1
        left, more = store.pending_poll("s-poll", 10)
    assert len(left) == 1 and not more
    states = _states(database, "s-poll")
    assert states[rows[0].jti] == "delivered" and states[rows[1].jti] == "failed"


def test_purge_bounds_what_is_kept(
    database: Database, storage: SqlStorage, transmitter: Transmitter
) -> None:
    _stream(database, "s-paused", status="paused")
    _stream(database, "s-1")
    _add(storage, _flip("dev-1"))
    now = datetime.now(UTC)
    with open_store(database) as store:
        (row,) = store.claim_push(now, now + timedelta(seconds=30), 10)
        store.mark_delivered([row.id], now)
        assert store.purge(now - timedelta(days=1)) == 0  # everything is younger
        assert store.purge(now + timedelta(seconds=1)) == 2  # delivered + held too long
        assert store.depth() == 0


def test_a_batch_goes_to_every_stream(
    database: Database, storage: SqlStorage, transmitter: Transmitter, worker: DeliveryWorker
) -> None:
    with set_sink(503) as slow, set_sink() as fine:
        _stream(database, "s-slow", url=slow.url)
        _stream(database, "s-fine", url=fine.url)
        _add(storage, _flip())
        assert worker.run_once() == 2  # on the sender pool
        assert list(_states(database, "s-fine").values()) == ["delivered"]
        assert list(_states(database, "s-slow").values()) == ["pending"]
        assert len(slow.received) == len(fine.received) == 1


def test_a_receiver_removed_from_the_configuration_gets_nothing_more(
    database: Database, storage: SqlStorage, transmitter: Transmitter, worker: DeliveryWorker
) -> None:
    with set_sink() as sink:
        _stream(database, "s-1", url=sink.url)
        _add(storage, _flip())
        with open_store(database) as store:  # the receiver's client id changes hands
            store.conn.exec_driver_sql("UPDATE ssf_streams SET client_id = 'gone'")
        assert worker.run_once() == 0 and sink.received == []


def test_retry_after_is_honoured(
    database: Database, storage: SqlStorage, transmitter: Transmitter, worker: DeliveryWorker
) -> None:
    with set_sink((429, None, {"Retry-After": "3"})) as sink:
        _stream(database, "s-1", url=sink.url)
        _add(storage, _flip())
        start = datetime.now(UTC)
        assert worker.run_once(start) == 1
        assert worker.run_once(start + timedelta(seconds=2)) == 0  # backoff alone: <= 1 s
        assert worker.run_once(start + timedelta(seconds=5)) == 1
        assert list(_states(database, "s-1").values()) == ["delivered"]
