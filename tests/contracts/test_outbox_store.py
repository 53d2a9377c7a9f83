"""Contract of OutboxStore on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy.exc

from mdm_core.bus.events import DomainEvent
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _event(n: int) -> DomainEvent:
    return DomainEvent(type="posture.reported", subject=f"dev-{n}", payload={"n": n, "x": [1, "é"]})


def test_add_then_fetch_in_id_order(database: Database) -> None:
    storage = SqlStorage(database)
    events = [_event(n) for n in range(5)]
    with storage.unit_of_work() as uow:
        uow.outbox.add(events[:3])
        uow.outbox.add([])
    with storage.unit_of_work() as uow:
        uow.outbox.add(events[3:])
    with storage.unit_of_work() as uow:
        got = uow.outbox.fetch_unpublished(10)
    assert [e.event for e in got] == events
    assert [e.id for e in got] == sorted(e.id for e in got)
    assert got[0].event.payload == {"n": 0, "x": [1, "é"]}
    assert got[0].event.occurred_at.tzinfo is not None


def test_fetch_limit_and_empty(database: Database) -> None:
    storage = SqlStorage(database)
    with storage.unit_of_work() as uow:
        assert uow.outbox.fetch_unpublished(10) == []
        uow.outbox.add([_event(n) for n in range(4)])
    with storage.unit_of_work() as uow:
        assert [e.event.payload["n"] for e in uow.outbox.fetch_unpublished(2)] == [0, 1]


def test_mark_published_hides_rows_and_purge_deletes_only_published(database: Database) -> None:
    storage = SqlStorage(database)
    with storage.unit_of_work() as uow:
        uow.outbox.add([_event(n) for n in range(3)])
    with storage.unit_of_work() as uow:
        first = uow.outbox.fetch_unpublished(2)
        uow.outbox.mark_published([e.id for e in first], T0)
        uow.outbox.mark_published([], T0)
        uow.outbox.mark_published([999_999], T0)  # unknown id: ignored
    with storage.unit_of_work() as uow:
        rest = uow.outbox.fetch_unpublished(10)
        assert [e.event.payload["n"] for e in rest] == [2]
        assert uow.outbox.purge_published(T0) == 0  # strictly before
        assert uow.outbox.purge_published(T0 + timedelta(seconds=1)) == 2
    with storage.unit_of_work() as uow:
        assert [e.event.payload["n"] for e in uow.outbox.fetch_unpublished(10)] == [2]


def test_rolled_back_unit_of_work_leaves_no_event(database: Database) -> None:
    storage = SqlStorage(database)
    with pytest.raises(RuntimeError), storage.unit_of_work() as uow:
        uow.outbox.add([_event(1)])
        raise RuntimeError("boom")
    with storage.unit_of_work() as uow:
        assert uow.outbox.fetch_unpublished(10) == []


def test_duplicate_event_id_is_refused(database: Database) -> None:
    storage = SqlStorage(database)
    event = _event(1)
    with storage.unit_of_work() as uow:
        uow.outbox.add([event])
    with pytest.raises(sqlalchemy.exc.IntegrityError), storage.unit_of_work() as uow:
        uow.outbox.add([event])
