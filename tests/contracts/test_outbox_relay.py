"""The outbox relay on both backends: id order, exactly once per process, at least once across
a crash, concurrent relays on PostgreSQL take disjoint rows, and the background thread."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mdm_core.bus.events import DomainEvent, InProcessBus
from mdm_core.bus.outbox_relay import OutboxRelay
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage


class RecordingBus(InProcessBus):
    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.seen: list[DomainEvent] = []
        self.fail_at = fail_at

    def publish(self, event: DomainEvent) -> None:
        if self.fail_at is not None and len(self.seen) == self.fail_at:
            self.fail_at = None
            raise ConnectionError("bus down")
        self.seen.append(event)
        super().publish(event)


def _add(storage: SqlStorage, n: int, start: int = 0) -> list[DomainEvent]:
    events = [
        DomainEvent(type="test.event", subject="s", payload={"n": i})
        for i in range(start, start + n)
    ]
    with storage.unit_of_work() as uow:
        uow.outbox.add(events)
    return events


def _n(bus: RecordingBus) -> list[int]:
    return [e.payload["n"] for e in bus.seen]


def test_in_order_exactly_once_per_process(database: Database) -> None:
    storage = SqlStorage(database)
    bus = RecordingBus()
    relay = OutboxRelay(storage, bus, batch_size=4)
    events = _add(storage, 10)
    assert relay.run_once() == 4
    assert relay.drain() == 6
    assert relay.run_once() == 0
    assert [e.id for e in bus.seen] == [e.id for e in events]
    _add(storage, 2, start=10)
    relay.drain()
    assert _n(bus) == list(range(12))


def test_bus_failure_stops_the_batch_and_keeps_order(database: Database) -> None:
    storage = SqlStorage(database)
    bus = RecordingBus(fail_at=3)
    relay = OutboxRelay(storage, bus, batch_size=10)
    _add(storage, 6)
    assert relay.run_once() == 3
    assert relay.run_once() == 3
    assert _n(bus) == [0, 1, 2, 3, 4, 5]


def test_crash_before_marking_resends_at_least_once(database: Database) -> None:
    storage = SqlStorage(database)
    bus = RecordingBus()
    crashed = {"done": False}

    def crashing_clock() -> datetime:
        if not crashed["done"]:
            crashed["done"] = True
            raise SystemExit("process killed between publish and commit")
        return datetime.now(UTC)

    _add(storage, 3)
    with pytest.raises(SystemExit):
        OutboxRelay(storage, bus, clock=crashing_clock).run_once()
    assert _n(bus) == [0, 1, 2]  # published, but never marked
    restarted = OutboxRelay(storage, bus)  # a new process on the same store
    assert restarted.run_once() == 3
    assert _n(bus) == [0, 1, 2, 0, 1, 2]  # re-sent: consumers dedupe by event id
    assert restarted.run_once() == 0


def test_purge_keeps_unpublished(database: Database) -> None:
    storage = SqlStorage(database)
    relay = OutboxRelay(storage, RecordingBus())
    _add(storage, 3)
    relay.drain()
    _add(storage, 1, start=3)
    relay.retention = relay.retention * 0  # everything published is old enough
    time.sleep(0.01)
    assert relay.purge() == 3
    assert relay.run_once() == 1


def test_background_thread_publishes_on_kick_and_stops(database: Database) -> None:
    storage = SqlStorage(database)
    bus = RecordingBus()
    got = threading.Event()
    bus.subscribe("test.event", lambda e: got.set())
    relay = OutboxRelay(storage, bus, poll_interval=30.0)  # only a kick can wake it in time
    relay.start()
    try:
        assert relay.running
        _add(storage, 1)
        relay.kick()
        assert got.wait(5.0)
    finally:
        relay.stop()
    assert not relay.running
    _add(storage, 1, start=1)
    relay.kick()  # stopped: nothing happens
    time.sleep(0.1)
    assert _n(bus) == [0]


def test_concurrent_relays_take_disjoint_rows_on_postgres(
    postgres_database: Database, tmp_path: Path
) -> None:
    storage = SqlStorage(postgres_database)
    _add(storage, 10)
    other_bus = RecordingBus()
    other = OutboxRelay(storage, other_bus, batch_size=10)
    with storage.unit_of_work() as uow:  # "process A" holds the first five rows
        held = uow.outbox.fetch_unpublished(5)
        assert [e.event.payload["n"] for e in held] == [0, 1, 2, 3, 4]
        done = threading.Event()
        result: list[int] = []

        def run_other() -> None:
            result.append(other.run_once())
            done.set()

        worker = threading.Thread(target=run_other)
        worker.start()
        assert done.wait(10.0), "the second relay blocked on locked rows"
        worker.join()
        uow.outbox.mark_published([e.id for e in held], datetime.now(UTC))
    assert result == [5]
    assert _n(other_bus) == [5, 6, 7, 8, 9]
    assert other.run_once() == 0
