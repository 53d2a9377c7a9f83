"""Contract of PostureStore on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from mdm_core.domain.errors import NotFound
from mdm_core.posture.model import ManagedApp, Platform, Posture
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.tables import devices, posture_history
from mdm_core.storage.sql.uow import SqlStorage
from tests.contracts.device_rows import add_device

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _posture(n: int) -> Posture:
    return Posture(
        platform=Platform.ANDROID,
        collected_at=T0 + timedelta(minutes=n),
        os_version=f"14.{n}",
        security_patch_level=date(2026, 2, 1),
        storage_encrypted=n % 2 == 0,
        managed_apps=(ManagedApp(app_id="com.example.mail", version="1.0"),),
    )


def test_first_record_has_no_previous_and_sets_last_checkin(database: Database) -> None:
    add_device(database, "d1")
    storage = SqlStorage(database)
    with storage.unit_of_work() as uow:
        got = uow.posture.record("d1", _posture(0), received_at=T0, history_length=5)
    assert got.seq == 1 and got.previous is None
    with storage.unit_of_work() as uow:
        latest = uow.posture.latest("d1")
    assert latest is not None
    assert latest.seq == 1 and latest.posture == _posture(0) and latest.received_at == T0
    with database.transaction() as conn:
        checked = conn.execute(select(devices.c.last_checkin_at).where(devices.c.id == "d1"))
        assert checked.scalar_one().replace(tzinfo=UTC) == T0


def test_second_record_returns_previous(database: Database) -> None:
    add_device(database, "d1")
    storage = SqlStorage(database)
    with storage.unit_of_work() as uow:
        uow.posture.record("d1", _posture(0), received_at=T0, history_length=5)
    with storage.unit_of_work() as uow:
        got = uow.posture.record("d1", _posture(1), received_at=T0, history_length=5)
    assert got.seq == 2 and got.previous == _posture(0)
    with storage.unit_of_work() as uow:
        latest = uow.posture.latest("d1")
        assert latest is not None and latest.posture == _posture(1)


def test_history_is_a_ring_bounded_at_n(database: Database) -> None:
    add_device(database, "d1")
    add_device(database, "d2")
    storage = SqlStorage(database)
    for n in range(12):
        with storage.unit_of_work() as uow:
            uow.posture.record("d1", _posture(n), received_at=T0, history_length=4)
    with storage.unit_of_work() as uow:
        uow.posture.record("d2", _posture(99), received_at=T0, history_length=4)
        history = uow.posture.history("d1")
        assert [h.seq for h in history] == [12, 11, 10, 9]
        assert [h.posture.os_version for h in history] == ["14.11", "14.10", "14.9", "14.8"]
        assert [h.seq for h in uow.posture.history("d1", limit=2)] == [12, 11]
        assert [h.seq for h in uow.posture.history("d2")] == [1]
    with database.transaction() as conn:
        rows = conn.execute(
            select(posture_history.c.slot).where(posture_history.c.device_id == "d1")
        ).all()
    assert len(rows) == 4


def test_unknown_device(database: Database) -> None:
    storage = SqlStorage(database)
    with storage.unit_of_work() as uow:
        assert uow.posture.latest("nope") is None
        assert uow.posture.history("nope") == []
    with pytest.raises(NotFound), storage.unit_of_work() as uow:
        uow.posture.record("nope", _posture(0), received_at=T0, history_length=3)


def test_commands_waiting_hint_is_never_wrong(database: Database) -> None:
    from mdm_core.device.commands import CommandService

    add_device(database, "d1")
    storage = SqlStorage(database)
    service = CommandService(storage)

    def hint(n: int) -> bool | None:
        with storage.unit_of_work() as uow:
            got = uow.posture.record("d1", _posture(n), received_at=T0, history_length=3)
            waiting = bool(uow.commands.next_commands("d1", 1))
        assert got.commands_waiting in (None, waiting)  # None: the backend cannot tell
        return got.commands_waiting

    hint(0)
    cmd = service.enqueue("d1", "lock", {}, created_by="t", now=T0)
    assert hint(1) in (None, True)
    with storage.unit_of_work() as uow:
        service.deliver(uow, "d1", now=T0)
    assert hint(2) in (None, True)  # delivered, unanswered: still waiting
    service.record_result("d1", cmd.id, "not_now", now=T0)
    assert hint(3) in (None, True)
    with storage.unit_of_work() as uow:
        service.deliver(uow, "d1", now=T0)
    service.record_result("d1", cmd.id, "acknowledged", now=T0)
    assert hint(4) in (None, False)
    if database.is_postgres:
        assert hint(5) is False


def test_sources_round_trip_and_replace_latest(database: Database) -> None:
    from mdm_core.posture.merge import PostureSources

    add_device(database, "d1")
    storage = SqlStorage(database)
    src = PostureSources({"os_version": "apple"}, {"apple": T0})
    with storage.unit_of_work() as uow:
        first = uow.posture.record("d1", _posture(0), received_at=T0, history_length=3, sources=src)
        assert first.previous_sources is None
    with storage.unit_of_work() as uow:
        second = uow.posture.record("d1", _posture(1), received_at=T0, history_length=3)
        assert second.previous_sources == src
        merged = _posture(1).model_copy(update={"jailbroken": False})
        uow.posture.replace_latest("d1", second.seq, merged, src, history_length=3)
        uow.posture.replace_latest("d1", 99, _posture(7), src, history_length=3)  # not latest
    with storage.unit_of_work() as uow:
        latest = uow.posture.latest("d1")
        assert latest is not None and latest.posture.jailbroken is False
        assert uow.posture.history("d1")[0].posture.jailbroken is False
        assert uow.posture.history("d1")[1].posture == _posture(0)
        third = uow.posture.record("d1", _posture(2), received_at=T0, history_length=3)
        assert third.previous_sources == src
