"""SQL implementation of :mod:`mdm_core.offboarding.store` (``uow.offboarding``).

Tables ``offboarding_jobs``, ``offboarding_devices`` and ``user_blocks``
(:mod:`mdm_core.storage.sql.tables`, migration ``0012_offboarding``). Inserts are
``INSERT .. ON CONFLICT DO NOTHING`` on both dialects: a duplicate never aborts the caller's
PostgreSQL transaction, and a concurrent insert waits for the other transaction to end.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, delete, exists, false, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from mdm_core.offboarding.model import (
    FINAL_DEVICE_STATES,
    OPEN_STATUSES,
    Action,
    DeviceState,
    JobDevice,
    JobStatus,
    OffboardingJob,
    UserBlock,
)
from mdm_core.storage.sql.encoding import as_utc
from mdm_core.storage.sql.tables import (
    commands,
    devices,
    offboarding_devices,
    offboarding_jobs,
    user_blocks,
)

__all__ = ["SqlOffboardingStore"]

_J = offboarding_jobs
_D = offboarding_devices
_OPEN = [s.value for s in OPEN_STATUSES]
_NOT_FINAL = [s.value for s in DeviceState if s not in FINAL_DEVICE_STATES]
_FINAL_COMMAND = ("acknowledged", "error", "cancelled")
_GONE = ("retired", "wiped")


def _opt(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def _job(row: Row[Any]) -> OffboardingJob:
    return OffboardingJob(
        id=row.id,
        user_id=row.user_id,
        username=row.username,
        groups=tuple(row.groups or ()),
        trigger=row.trigger,
        source_ref=row.source_ref,
        actor=row.actor,
        reason=row.reason,
        status=JobStatus(row.status),
        effective_at=as_utc(row.effective_at),
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
        started_at=_opt(row.started_at),
        finished_at=_opt(row.finished_at),
    )


def _device(row: Row[Any]) -> JobDevice:
    return JobDevice(
        job_id=row.job_id,
        device_id=row.device_id,
        ownership=row.ownership,
        action=Action(row.action),
        state=DeviceState(row.state),
        updated_at=as_utc(row.updated_at),
        command_id=row.command_id,
        lock_command_id=row.lock_command_id,
        wipe_request_id=row.wipe_request_id,
        detail=row.detail,
    )


class SqlOffboardingStore:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def _insert_ignore(self, table: Any, values: dict[str, Any]) -> bool:
        ins = (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)
        key = next(iter(table.primary_key.columns))
        # RETURNING, not rowcount: psycopg reports no reliable count for DO NOTHING.
        inserted = self.conn.execute(ins.values(**values).on_conflict_do_nothing().returning(key))
        return inserted.first() is not None

    # --- jobs -------------------------------------------------------------------------------

    def add_job(self, job: OffboardingJob) -> bool:
        return self._insert_ignore(
            _J,
            {
                "id": job.id,
                "user_id": job.user_id,
                "open_user": job.user_id if job.status in OPEN_STATUSES else None,
                "username": job.username,
                "groups": list(job.groups),
                "trigger": job.trigger,
                "source_ref": job.source_ref,
                "actor": job.actor,
                "reason": job.reason,
                "status": job.status.value,
                "effective_at": as_utc(job.effective_at),
                "created_at": as_utc(job.created_at),
                "updated_at": as_utc(job.updated_at),
                "started_at": _opt(job.started_at),
                "finished_at": _opt(job.finished_at),
            },
        )

    def get(self, job_id: str, *, lock: bool = False) -> OffboardingJob | None:
        query = select(_J).where(_J.c.id == job_id)
        if lock:
            if self.dialect == "postgresql":
                query = query.with_for_update()
            else:
                # A write that matches nothing begins the transaction and takes SQLite's
                # write lock now, so what is read below is what this unit of work commits on.
                self.conn.execute(
                    update(_J).where(_J.c.id == job_id, false()).values(status=_J.c.status)
                )
        row = self.conn.execute(query).first()
        return None if row is None else _job(row)

    def open_for_user(self, user_id: str) -> OffboardingJob | None:
        row = self.conn.execute(select(_J).where(_J.c.open_user == user_id)).first()
        return None if row is None else _job(row)

    def by_source(self, trigger: str, source_ref: str) -> OffboardingJob | None:
        row = self.conn.execute(
            select(_J).where(_J.c.trigger == trigger, _J.c.source_ref == source_ref)
        ).first()
        return None if row is None else _job(row)

    def for_user(self, user_id: str) -> list[OffboardingJob]:
        rows = self.conn.execute(
            select(_J).where(_J.c.user_id == user_id).order_by(_J.c.created_at, _J.c.id)
        )
        return [_job(r) for r in rows]

    def update_job(
        self,
        job_id: str,
        *,
        expected: JobStatus,
        status: JobStatus,
        at: datetime,
        effective_at: datetime | None = None,
        groups: Sequence[str] | None = None,
        username: str | None = None,
    ) -> bool:
        values: dict[str, Any] = {"status": status.value, "updated_at": as_utc(at)}
        if status not in OPEN_STATUSES:
            values["open_user"] = None
            values["finished_at"] = as_utc(at)
        if status is JobStatus.RUNNING and expected is not JobStatus.RUNNING:
            values["started_at"] = as_utc(at)
        if effective_at is not None:
            values["effective_at"] = as_utc(effective_at)
        if groups is not None:
            values["groups"] = list(groups)
        if username is not None:
            values["username"] = username
        result = self.conn.execute(
            update(_J).where(_J.c.id == job_id, _J.c.status == expected.value).values(**values)
        )
        return bool(result.rowcount)

    def due(self, now: datetime, limit: int) -> list[str]:
        rows = self.conn.execute(
            select(_J.c.id)
            .where(_J.c.status == JobStatus.SCHEDULED.value, _J.c.effective_at <= as_utc(now))
            .order_by(_J.c.effective_at, _J.c.id)
            .limit(limit)
        )
        return [r.id for r in rows]

    def advanceable(self, limit: int) -> list[tuple[str, str]]:
        cmd = commands.alias("c")
        dev = devices.alias("dev")
        query = (
            select(_D.c.job_id, _D.c.device_id)
            .select_from(
                _D.join(_J, _J.c.id == _D.c.job_id)
                .outerjoin(cmd, cmd.c.id == _D.c.command_id)
                .outerjoin(dev, dev.c.id == _D.c.device_id)
            )
            .where(
                _J.c.status == JobStatus.RUNNING.value,
                _D.c.state.in_(_NOT_FINAL),
                or_(
                    _D.c.state == DeviceState.AWAITING_APPROVAL.value,
                    cmd.c.status.in_(_FINAL_COMMAND),
                    dev.c.id.is_(None),
                    dev.c.status.in_(_GONE),
                ),
            )
            .order_by(_D.c.job_id, _D.c.device_id)
            .limit(limit)
        )
        return [(r.job_id, r.device_id) for r in self.conn.execute(query)]

    def finishable(self, limit: int) -> list[str]:
        pending = exists().where(and_(_D.c.job_id == _J.c.id, _D.c.state.in_(_NOT_FINAL)))
        rows = self.conn.execute(
            select(_J.c.id)
            .where(_J.c.status == JobStatus.RUNNING.value, ~pending)
            .order_by(_J.c.id)
            .limit(limit)
        )
        return [r.id for r in rows]

    # --- devices ----------------------------------------------------------------------------

    def add_device(self, device: JobDevice) -> bool:
        return self._insert_ignore(
            _D,
            {
                "job_id": device.job_id,
                "device_id": device.device_id,
                "ownership": device.ownership,
                "action": device.action.value,
                "state": device.state.value,
                "command_id": device.command_id,
                "lock_command_id": device.lock_command_id,
                "wipe_request_id": device.wipe_request_id,
                "detail": device.detail,
                "updated_at": as_utc(device.updated_at),
            },
        )

    def devices(self, job_id: str) -> list[JobDevice]:
        rows = self.conn.execute(select(_D).where(_D.c.job_id == job_id).order_by(_D.c.device_id))
        return [_device(r) for r in rows]

    def device(self, job_id: str, device_id: str) -> JobDevice | None:
        row = self.conn.execute(
            select(_D).where(_D.c.job_id == job_id, _D.c.device_id == device_id)
        ).first()
        return None if row is None else _device(row)

    def update_device(
        self,
        job_id: str,
        device_id: str,
        *,
        expected: DeviceState,
        state: DeviceState,
        at: datetime,
        command_id: str | None = None,
        detail: str | None = None,
    ) -> bool:
        values: dict[str, Any] = {"state": state.value, "updated_at": as_utc(at)}
        if command_id is not None:
            values["command_id"] = command_id
        if detail is not None:
            values["detail"] = detail
        result = self.conn.execute(
            update(_D)
            .where(_D.c.job_id == job_id, _D.c.device_id == device_id, _D.c.state == expected.value)
            .values(**values)
        )
        return bool(result.rowcount)

    # --- blocks -----------------------------------------------------------------------------

    def block(self, block: UserBlock) -> bool:
        return self._insert_ignore(
            user_blocks,
            {
                "user_id": block.user_id,
                "job_id": block.job_id,
                "reason": block.reason,
                "blocked_at": as_utc(block.blocked_at),
            },
        )

    def unblock(self, user_id: str) -> bool:
        result = self.conn.execute(delete(user_blocks).where(user_blocks.c.user_id == user_id))
        return bool(result.rowcount)

    def blocked(self, user_id: str) -> UserBlock | None:
        row = self.conn.execute(select(user_blocks).where(user_blocks.c.user_id == user_id)).first()
        if row is None:
            return None
        return UserBlock(row.user_id, row.job_id, row.reason, as_utc(row.blocked_at))
