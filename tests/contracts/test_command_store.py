"""Contract of the command queue store (with the service's status machine) on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from mdm_core.device.commands import (
    CommandService,
    CommandStatus,
    IdempotencyConflict,
    IllegalTransition,
    NoSuchDevice,
    UnknownCommand,
)
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.tables import command_transitions, commands, outbox
from mdm_core.storage.sql.uow import SqlStorage
from tests.contracts.device_rows import add_device

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def service(database: Database) -> CommandService:
    add_device(database, "d1")
    add_device(database, "d2")
    return CommandService(SqlStorage(database))


def _deliver(service: CommandService, device: str, at: datetime = T0, limit: int = 10):
    with service.storage.unit_of_work() as uow:
        return service.deliver(uow, device, now=at, limit=limit)


def _count(database: Database, table) -> int:
    with database.transaction() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_priority_then_age_ordering(service: CommandService) -> None:
    low = service.enqueue("d1", "install_app", {"app_id": "a"}, created_by="t", now=T0)
    wipe = service.enqueue(
        "d1", "selective_wipe", {}, created_by="t", now=T0 + timedelta(seconds=1)
    )
    low2 = service.enqueue(
        "d1", "install_app", {"app_id": "b"}, created_by="t", now=T0 + timedelta(seconds=2)
    )
    got = _deliver(service, "d1")
    assert [c.id for c in got] == [wipe.id, low.id, low2.id]
    assert all(c.status is CommandStatus.DELIVERED and c.attempts == 1 for c in got)
    assert [c.id for c in _deliver(service, "d1", limit=1)] == [wipe.id]


def test_unanswered_is_delivered_again_and_every_transition_recorded(
    service: CommandService, database: Database
) -> None:
    cmd = service.enqueue("d1", "lock", {"message": "call IT"}, created_by="admin:x", now=T0)
    assert _deliver(service, "d2") == []  # other device sees nothing
    first = _deliver(service, "d1", T0)
    again = _deliver(service, "d1", T0 + timedelta(minutes=5))
    assert [c.id for c in first] == [c.id for c in again] == [cmd.id]
    assert again[0].attempts == 2
    done = service.record_result("d1", cmd.id, "acknowledged", now=T0 + timedelta(minutes=6))
    assert done.status is CommandStatus.ACKNOWLEDGED and done.acknowledged_at is not None
    assert _deliver(service, "d1") == []
    steps = [(t.from_status, t.to_status) for t in service.transitions(cmd.id)]
    assert steps == [
        (None, CommandStatus.QUEUED),
        (CommandStatus.QUEUED, CommandStatus.DELIVERED),
        (CommandStatus.DELIVERED, CommandStatus.DELIVERED),
        (CommandStatus.DELIVERED, CommandStatus.ACKNOWLEDGED),
    ]
    # one outbox event per transition, in order
    with database.transaction() as conn:
        rows = conn.execute(select(outbox.c.type, outbox.c.payload).order_by(outbox.c.id)).all()
    assert [r.type for r in rows] == ["command.state_changed"] * 4
    assert [r.payload["to"] for r in rows] == ["queued", "delivered", "delivered", "acknowledged"]
    assert rows[0].payload["device_id"] == "d1"


def test_second_ack_is_a_no_op_and_other_device_is_refused(
    service: CommandService, database: Database
) -> None:
    cmd = service.enqueue("d1", "wipe", {}, created_by="t", now=T0)
    _deliver(service, "d1")
    with pytest.raises(UnknownCommand):
        service.record_result("d2", cmd.id, "acknowledged", now=T0)
    with pytest.raises(UnknownCommand):
        service.record_result("d1", "no-such-id", "acknowledged", now=T0)
    service.record_result("d1", cmd.id, "acknowledged", now=T0)
    before = _count(database, command_transitions), _count(database, outbox)
    again = service.record_result("d1", cmd.id, "acknowledged", now=T0 + timedelta(hours=1))
    assert again.status is CommandStatus.ACKNOWLEDGED
    assert (_count(database, command_transitions), _count(database, outbox)) == before
    with pytest.raises(IllegalTransition):
        service.record_result("d1", cmd.id, "error", "late", now=T0)


def test_not_now_is_retried_at_next_delivery(service: CommandService) -> None:
    cmd = service.enqueue("d1", "install_app", {"app_id": "x"}, created_by="t", now=T0)
    _deliver(service, "d1")
    deferred = service.record_result("d1", cmd.id, "not_now", "screen locked", now=T0)
    assert deferred.status is CommandStatus.NOT_NOW
    again = _deliver(service, "d1", T0 + timedelta(minutes=1))
    assert [c.id for c in again] == [cmd.id]
    failed = service.record_result("d1", cmd.id, "error", "disk full", now=T0)
    assert failed.status is CommandStatus.ERROR and failed.error == "disk full"
    assert _deliver(service, "d1") == []


def test_result_for_undelivered_command_is_illegal(service: CommandService) -> None:
    cmd = service.enqueue("d1", "lock", {}, created_by="t", now=T0)
    with pytest.raises(IllegalTransition):
        service.record_result("d1", cmd.id, "acknowledged", now=T0)
    assert service.get(cmd.id).status is CommandStatus.QUEUED  # type: ignore[union-attr]


def test_cancel(service: CommandService) -> None:
    cmd = service.enqueue("d1", "lock", {}, created_by="t", now=T0)
    cancelled = service.cancel(cmd.id, by="admin:a", reason="mistake", now=T0)
    assert cancelled.status is CommandStatus.CANCELLED
    assert _deliver(service, "d1") == []
    with pytest.raises(IllegalTransition):
        service.cancel(cmd.id, by="admin:a", now=T0)
    with pytest.raises(UnknownCommand):
        service.cancel("nope", by="admin:a", now=T0)
    delivered = service.enqueue("d1", "lock", {}, created_by="t", now=T0)
    _deliver(service, "d1")
    service.cancel(delivered.id, by="admin:a", now=T0)
    with pytest.raises(IllegalTransition):  # the device answers after the cancel
        service.record_result("d1", delivered.id, "acknowledged", now=T0)
    detail = service.transitions(cmd.id)[-1].detail
    assert detail == "cancelled by admin:a: mistake"


def test_idempotency_key_makes_a_double_fired_wipe_one_wipe(
    service: CommandService, database: Database
) -> None:
    a = service.enqueue("d1", "wipe", {}, created_by="hr", idempotency_key="off-42", now=T0)
    b = service.enqueue("d1", "wipe", {}, created_by="hr", idempotency_key="off-42", now=T0)
    assert a.id == b.id
    assert _count(database, commands) == 1
    assert _count(database, outbox) == 1
    # same key on another device is a different command
    c = service.enqueue("d2", "wipe", {}, created_by="hr", idempotency_key="off-42", now=T0)
    assert c.id != a.id
    with pytest.raises(IdempotencyConflict):
        service.enqueue("d1", "lock", {}, created_by="hr", idempotency_key="off-42", now=T0)


def test_enqueue_many_all_or_nothing(service: CommandService, database: Database) -> None:
    many = service.enqueue_many(
        ["d1", "d2", "d1"], "install_app", {"app_id": "com.x"}, created_by="t", now=T0
    )
    assert [c.device_id for c in many] == ["d1", "d2"]
    assert len({c.id for c in many}) == 2
    with pytest.raises(NoSuchDevice):
        service.enqueue_many(["d1", "ghost"], "lock", {}, created_by="t", now=T0)
    assert _count(database, commands) == 2
    assert service.enqueue_many([], "lock", {}, created_by="t") == []
    keyed = service.enqueue_many(
        ["d1", "d2"], "selective_wipe", {}, created_by="hr", idempotency_key="k", now=T0
    )
    again = service.enqueue_many(
        ["d1", "d2"], "selective_wipe", {}, created_by="hr", idempotency_key="k", now=T0
    )
    assert [c.id for c in keyed] == [c.id for c in again]


def test_reads(service: CommandService) -> None:
    assert service.get("nope") is None
    assert service.transitions("nope") == []
    assert service.for_device("d1") == []
    a = service.enqueue("d1", "lock", {}, created_by="t", now=T0)
    b = service.enqueue("d1", "lock", {}, created_by="t", now=T0 + timedelta(seconds=1))
    assert [c.id for c in service.for_device("d1")] == [b.id, a.id]
    got = service.get(a.id)
    assert got is not None and got.payload == {"message": None, "phone_number": None}
    assert got.created_at == T0


def test_retired_or_wiped_devices_get_no_new_commands(
    service: CommandService, database: Database
) -> None:
    from mdm_core.device.commands import InactiveDevice

    add_device(database, "gone", status="retired")
    add_device(database, "erased", status="wiped")
    for device in ("gone", "erased"):
        with pytest.raises(InactiveDevice) as info:
            service.enqueue(device, "lock", {}, created_by="t", now=T0)
        assert info.value.reason == "device_inactive" and info.value.status == 409
    with pytest.raises(InactiveDevice):  # all or nothing
        service.enqueue_many(["d1", "gone"], "lock", {}, created_by="t", now=T0)
    assert _count(database, commands) == 0


@pytest.mark.parametrize("kind", ["wipe", "selective_wipe"])
def test_wipe_ack_leaves_device_status_to_offboarding(service: CommandService, kind: str) -> None:
    from mdm_core.domain.model import DeviceStatus

    cmd = service.enqueue("d1", kind, {}, created_by="hr", now=T0)
    _deliver(service, "d1")
    service.record_result("d1", cmd.id, "acknowledged", now=T0)
    with service.storage.unit_of_work() as uow:
        device = uow.devices.get("d1")
    assert device is not None and device.status is DeviceStatus.ACTIVE


def test_every_queued_command_is_audited_with_who_asked(service: CommandService) -> None:
    """An admin action leaves an audit record (not only the command's transitions); a
    re-sent idempotent command is one command and one record."""
    lock = service.enqueue("d1", "lock", {}, created_by="admin:carol", idempotency_key="k", now=T0)
    again = service.enqueue("d1", "lock", {}, created_by="admin:carol", idempotency_key="k", now=T0)
    assert again.id == lock.id
    with service.storage.unit_of_work() as uow:
        queued = [e for e in uow.audit.recent("d1") if e.action == "command.queued"]
    assert len(queued) == 1
    assert queued[0].actor == "admin:carol"
    assert queued[0].detail["command_id"] == lock.id and queued[0].detail["type"] == "lock"
