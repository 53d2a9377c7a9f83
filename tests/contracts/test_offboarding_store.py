"""Contract of ``uow.offboarding`` (:mod:`mdm_core.offboarding.store`) on SQLite and
PostgreSQL: one open job per user and one job per ``(trigger, source_ref)`` (a duplicate
answers ``False`` without aborting the transaction), conditional updates, the due and
advanceable queries, device rows, and user blocks (which bump the read model's
``directory`` version)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from mdm_core.device.command_model import CommandStatus, CommandType, NewCommand
from mdm_core.offboarding.model import (
    Action,
    DeviceState,
    JobDevice,
    JobStatus,
    OffboardingJob,
    UserBlock,
)
from mdm_core.read_model.versions import DIRECTORY, SqlVersionStore
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage
from tests.contracts.device_rows import add_device

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def job(
    job_id: str,
    user_id: str = "alice",
    *,
    status: JobStatus = JobStatus.RUNNING,
    trigger: str = "admin",
    source_ref: str | None = None,
    effective_at: datetime = T0,
) -> OffboardingJob:
    return OffboardingJob(
        id=job_id,
        user_id=user_id,
        username=user_id,
        groups=("staff",),
        trigger=trigger,
        source_ref=source_ref,
        actor="admin:root",
        reason=None,
        status=status,
        effective_at=effective_at,
        created_at=T0,
        updated_at=T0,
    )


def row(
    job_id: str, device_id: str, state: DeviceState = DeviceState.PENDING, **kw: object
) -> JobDevice:
    return JobDevice(
        job_id=job_id,
        device_id=device_id,
        ownership="corporate",
        action=Action.LOCK_AND_RETIRE,
        state=state,
        updated_at=T0,
        **kw,  # type: ignore[arg-type]
    )


def test_one_open_job_per_user_and_one_per_source(database: Database) -> None:
    storage = SqlStorage(database)
    with storage.unit_of_work() as uow:
        assert uow.offboarding.add_job(job("j1", source_ref="evt-1", trigger="hr:generic"))
        # A second open job for alice, and the same source again: refused, no exception,
        # and the transaction goes on (PostgreSQL would abort it on an IntegrityError).
        assert not uow.offboarding.add_job(job("j2"))
        assert not uow.offboarding.add_job(
            job("j3", "bob", source_ref="evt-1", trigger="hr:generic")
        )
        assert uow.offboarding.add_job(job("j4", "bob"))
    with storage.unit_of_work() as uow:
        assert uow.offboarding.get("j2") is None and uow.offboarding.get("j3") is None
        assert uow.offboarding.open_for_user("alice").id == "j1"  # type: ignore[union-attr]
        assert uow.offboarding.by_source("hr:generic", "evt-1").id == "j1"  # type: ignore[union-attr]
        assert uow.offboarding.by_source("hr:generic", "nope") is None
        stored = uow.offboarding.get("j1", lock=True)
        assert stored == job("j1", source_ref="evt-1", trigger="hr:generic")
        # Closing the job frees the user's slot; a new job for alice may follow.
        assert uow.offboarding.update_job(
            "j1", expected=JobStatus.RUNNING, status=JobStatus.DONE, at=T0 + timedelta(hours=1)
        )
        assert uow.offboarding.open_for_user("alice") is None
        assert uow.offboarding.add_job(job("j5"))
        assert [j.id for j in uow.offboarding.for_user("alice")] == ["j1", "j5"]
        done = uow.offboarding.get("j1")
        assert done is not None and done.finished_at == T0 + timedelta(hours=1)
        assert uow.offboarding.for_user("nobody") == []
        assert uow.offboarding.get("unknown") is None


def test_conditional_job_updates_and_the_due_query(database: Database) -> None:
    storage = SqlStorage(database)
    with storage.unit_of_work() as uow:
        for i, hours in enumerate((3, 1, 2)):
            uow.offboarding.add_job(
                job(
                    f"s{i}",
                    f"u{i}",
                    status=JobStatus.SCHEDULED,
                    effective_at=T0 + timedelta(hours=hours),
                )
            )
        uow.offboarding.add_job(job("r", "ur"))
    with storage.unit_of_work() as uow:
        assert uow.offboarding.due(T0, 10) == []
        assert uow.offboarding.due(T0 + timedelta(hours=2), 10) == ["s1", "s2"]
        assert uow.offboarding.due(T0 + timedelta(hours=5), 1) == ["s1"]
        # Wrong expected status: nothing written.
        assert not uow.offboarding.update_job(
            "s1", expected=JobStatus.RUNNING, status=JobStatus.DONE, at=T0
        )
        assert uow.offboarding.update_job(
            "s1", expected=JobStatus.SCHEDULED, status=JobStatus.RUNNING, at=T0,
            groups=["a", "b"], username="new",
        )  # fmt: skip
        started = uow.offboarding.get("s1")
        assert started is not None and started.started_at == T0 and started.groups == ("a", "b")
        assert started.username == "new"
        assert uow.offboarding.update_job(
            "s2", expected=JobStatus.SCHEDULED, status=JobStatus.CANCELLED, at=T0
        )
        assert uow.offboarding.due(T0 + timedelta(hours=5), 10) == ["s0"]


def test_device_rows_advanceable_and_finishable(database: Database) -> None:
    storage = SqlStorage(database)
    for device_id in ("d-acked", "d-waiting", "d-gone", "d-approval"):
        add_device(database, device_id)
    with storage.unit_of_work() as uow:
        results = uow.commands.enqueue(
            [
                NewCommand(f"c-{d}", d, CommandType.LOCK, {}, 90, "offboarding:j", T0, f"k-{d}")
                for d in ("d-acked", "d-waiting")
            ]
        )
        assert all(created for _, created in results)
        uow.commands.mark_delivered([c for c, _ in results], T0)
        uow.commands.record_result("d-acked", "c-d-acked", CommandStatus.ACKNOWLEDGED, None, T0)
        uow.offboarding.add_job(job("j"))
        uow.offboarding.add_job(job("empty", "bob"))
        assert uow.offboarding.add_device(row("j", "d-acked", command_id="c-d-acked"))
        assert not uow.offboarding.add_device(row("j", "d-acked"))  # exists: nothing written
        uow.offboarding.add_device(row("j", "d-waiting", command_id="c-d-waiting"))
        uow.offboarding.add_device(row("j", "d-gone", command_id="c-none"))
        uow.offboarding.add_device(row("j", "d-approval", DeviceState.AWAITING_APPROVAL))
    with database.transaction() as conn:  # d-gone was retired by someone else
        from sqlalchemy import update

        from mdm_core.storage.sql.tables import devices

        conn.execute(update(devices).where(devices.c.id == "d-gone").values(status="retired"))
    with storage.unit_of_work() as uow:
        assert uow.offboarding.advanceable(10) == [
            ("j", "d-acked"),
            ("j", "d-approval"),
            ("j", "d-gone"),
        ]
        assert uow.offboarding.finishable(10) == ["empty"]  # j has devices still pending
        assert [d.device_id for d in uow.offboarding.devices("j")] == [
            "d-acked", "d-approval", "d-gone", "d-waiting",
        ]  # fmt: skip
        assert uow.offboarding.devices("nope") == []
        assert not uow.offboarding.update_device(
            "j", "d-acked", expected=DeviceState.AWAITING_APPROVAL, state=DeviceState.RETIRED, at=T0
        )
        for device_id, state in (
            ("d-acked", DeviceState.RETIRED),
            ("d-gone", DeviceState.SKIPPED),
            ("d-waiting", DeviceState.FAILED),
        ):
            assert uow.offboarding.update_device(
                "j", device_id, expected=DeviceState.PENDING, state=state, at=T0, detail="x"
            )
        assert uow.offboarding.update_device(
            "j", "d-approval", expected=DeviceState.AWAITING_APPROVAL, state=DeviceState.PENDING,
            at=T0, command_id="c-d-acked",
        )  # fmt: skip
        moved = uow.offboarding.device("j", "d-approval")
        assert moved is not None and moved.command_id == "c-d-acked"
        assert uow.offboarding.device("j", "nope") is None
        # d-approval now waits on an acknowledged command: advanceable again; not finishable.
        assert uow.offboarding.advanceable(10) == [("j", "d-approval")]
        assert uow.offboarding.finishable(10) == ["empty"]
        uow.offboarding.update_device(
            "j", "d-approval", expected=DeviceState.PENDING, state=DeviceState.WIPED, at=T0
        )
        assert uow.offboarding.finishable(10) == ["empty", "j"]
        assert uow.offboarding.advanceable(10) == []


def test_blocks_bump_the_directory_version(database: Database) -> None:
    storage = SqlStorage(database)
    with storage.unit_of_work() as uow:
        before = SqlVersionStore(uow.conn).versions([DIRECTORY]).get(DIRECTORY, 0)
        assert uow.offboarding.blocked("alice") is None
        assert uow.offboarding.block(UserBlock("alice", "j1", "left", T0))
        assert not uow.offboarding.block(UserBlock("alice", "j2", "again", T0))
    with storage.unit_of_work() as uow:
        assert uow.offboarding.blocked("alice") == UserBlock("alice", "j1", "left", T0)
        after = SqlVersionStore(uow.conn).versions([DIRECTORY])[DIRECTORY]
        assert after > before
        assert uow.offboarding.unblock("alice")
        assert not uow.offboarding.unblock("alice")
    with storage.unit_of_work() as uow:
        assert uow.offboarding.blocked("alice") is None
        assert SqlVersionStore(uow.conn).versions([DIRECTORY])[DIRECTORY] > after


def test_concurrent_triggers_make_one_job(database: Database) -> None:
    """Two transactions insert an open job for the same user at once: one wins, the other
    answers ``False`` (no error), and exactly one job exists."""
    storage = SqlStorage(database)
    results: list[bool] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def insert(job_id: str) -> None:
        try:
            barrier.wait(5)
            with storage.unit_of_work() as uow:
                results.append(uow.offboarding.add_job(job(job_id)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=insert, args=(f"c{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and sorted(results) == [False, True]
    with storage.unit_of_work() as uow:
        assert len(uow.offboarding.for_user("alice")) == 1
