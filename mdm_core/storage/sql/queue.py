"""SQL implementation of :class:`mdm_core.storage.queue.CommandStore`.

Delivery is three statements whatever the number of commands (select, one ``UPDATE ... WHERE
id IN``, one multi-row transition insert). Results and cancellations lock the command row
(``FOR UPDATE`` on PostgreSQL; SQLite serialises writers) before checking the status machine.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from mdm_core.device.command_model import (
    DELIVERABLE_STATUSES,
    Command,
    CommandStatus,
    CommandType,
    IdempotencyConflict,
    InactiveDevice,
    NewCommand,
    NoSuchDevice,
    Transition,
    UnknownCommand,
    check_transition,
)
from mdm_core.domain.model import DeviceStatus
from mdm_core.storage.sql.encoding import as_utc, json_param
from mdm_core.storage.sql.tables import command_transitions, commands, devices

__all__ = ["SqlCommandStore"]

_DELIVERABLE = sorted(s.value for s in DELIVERABLE_STATUSES)
_INACTIVE = frozenset({DeviceStatus.RETIRED.value, DeviceStatus.WIPED.value})


def _opt_utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def _command(row: Row[Any]) -> Command:
    m = row._mapping
    return Command(
        id=m["id"],
        device_id=m["device_id"],
        type=CommandType(m["type"]),
        payload=dict(m["payload"]),
        priority=int(m["priority"]),
        status=CommandStatus(m["status"]),
        attempts=int(m["attempts"]),
        error=m["error"],
        created_by=m["created_by"],
        idempotency_key=m["idempotency_key"],
        created_at=as_utc(m["created_at"]),
        updated_at=as_utc(m["updated_at"]),
        delivered_at=_opt_utc(m["delivered_at"]),
        acknowledged_at=_opt_utc(m["acknowledged_at"]),
    )


class SqlCommandStore:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    # --- queue --------------------------------------------------------------------------

    def enqueue(self, new: Sequence[NewCommand]) -> list[tuple[Command, bool]]:
        if not new:
            return []
        wanted = {c.device_id for c in new}
        rows = self.conn.execute(
            select(devices.c.id, devices.c.status).where(devices.c.id.in_(wanted))
        )
        status = {str(r.id): str(r.status) for r in rows}
        missing = wanted - set(status)
        if missing:
            raise NoSuchDevice(f"unknown device(s): {', '.join(sorted(missing))}")
        gone = sorted(d for d, s in status.items() if s in _INACTIVE)
        if gone:
            raise InactiveDevice(f"device(s) retired or wiped: {', '.join(gone)}")
        existing = self._by_idempotency([c for c in new if c.idempotency_key is not None])
        to_insert = [c for c in new if (c.device_id, c.idempotency_key) not in existing]
        inserted = self._insert(to_insert)
        lost = [c for c in to_insert if c.id not in inserted]
        if lost:  # a concurrent enqueue with the same key won the race
            existing.update(self._by_idempotency(lost))
        results: list[tuple[Command, bool]] = []
        created_rows: list[dict[str, Any]] = []
        for c in new:
            if c.id in inserted:
                cmd = _new_command(c)
                results.append((cmd, True))
                created_rows.append(
                    {
                        "command_id": c.id,
                        "from_status": None,
                        "to_status": CommandStatus.QUEUED.value,
                        "detail": f"queued by {c.created_by}",
                        "at": c.created_at,
                    }
                )
                continue
            prior = existing[(c.device_id, c.idempotency_key)]
            if prior.type is not c.type or prior.payload != c.payload:
                raise IdempotencyConflict(
                    f"idempotency key {c.idempotency_key!r} was used for another command "
                    f"({prior.id}) on device {c.device_id}"
                )
            results.append((prior, False))
        if created_rows:
            self.conn.execute(insert(command_transitions), created_rows)
        return results

    def _by_idempotency(self, new: Sequence[NewCommand]) -> dict[tuple[str, str | None], Command]:
        if not new:
            return {}
        keys = [(c.device_id, c.idempotency_key) for c in new]
        rows = self.conn.execute(
            select(commands).where(
                tuple_(commands.c.device_id, commands.c.idempotency_key).in_(keys)
            )
        )
        return {(r.device_id, r.idempotency_key): _command(r) for r in rows}

    def _insert(self, new: Sequence[NewCommand]) -> set[str]:
        if not new:
            return set()
        payload_param = json_param("payload_json", self.dialect)
        rows = [
            {
                "id": c.id,
                "device_id": c.device_id,
                "type": c.type.value,
                "payload_json": json.dumps(c.payload, separators=(",", ":")),
                "priority": c.priority,
                "status": CommandStatus.QUEUED.value,
                "attempts": 0,
                "error": None,
                "created_by": c.created_by,
                "idempotency_key": c.idempotency_key,
                "created_at": c.created_at,
                "updated_at": c.created_at,
                "delivered_at": None,
                "acknowledged_at": None,
            }
            for c in new
        ]
        plain = [r for r in rows if r["idempotency_key"] is None]
        keyed = [r for r in rows if r["idempotency_key"] is not None]
        inserted: set[str] = {str(r["id"]) for r in plain}
        if plain:  # no key, nothing to collide with: one multi-row insert
            self.conn.execute(insert(commands).values(payload=payload_param), plain)
        if keyed:  # one statement per row: RETURNING tells which ones a racing twin beat
            dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
            stmt = (
                dialect_insert(commands)
                .values(payload=payload_param)
                .on_conflict_do_nothing(
                    index_elements=[commands.c.device_id, commands.c.idempotency_key]
                )
                .returning(commands.c.id)
            )
            for row in keyed:
                inserted.update(self.conn.execute(stmt, row).scalars())
        return inserted

    def next_commands(self, device_id: str, limit: int) -> list[Command]:
        stmt = (
            select(commands)
            .where(commands.c.device_id == device_id, commands.c.status.in_(_DELIVERABLE))
            .order_by(commands.c.priority.desc(), commands.c.created_at, commands.c.id)
            .limit(limit)
        )
        return [_command(r) for r in self.conn.execute(stmt)]

    def mark_delivered(self, cmds: Sequence[Command], at: datetime) -> list[Transition]:
        if not cmds:
            return []
        self.conn.execute(
            update(commands)
            .where(commands.c.id.in_([c.id for c in cmds]))
            .values(
                status=CommandStatus.DELIVERED.value,
                attempts=commands.c.attempts + 1,
                delivered_at=at,
                updated_at=at,
            )
        )
        transitions = []
        for c in cmds:
            check_transition(c.status, CommandStatus.DELIVERED)
            detail = "delivered" if c.status is CommandStatus.QUEUED else "delivered again"
            transitions.append(
                Transition(
                    c.id,
                    c.device_id,
                    c.type,
                    c.status,
                    CommandStatus.DELIVERED,
                    at,
                    f"{detail} (attempt {c.attempts + 1})",
                    c.attempts + 1,
                )
            )
        self._write_transitions(transitions)
        return transitions

    def record_result(
        self,
        device_id: str,
        command_id: str,
        status: CommandStatus,
        detail: str | None,
        at: datetime,
    ) -> tuple[Command, Transition | None]:
        current = self._locked(command_id)
        if current is None or current.device_id != device_id:
            raise UnknownCommand(f"no command {command_id!r} for this device")
        if current.status is status and status is not CommandStatus.DELIVERED:
            return current, None  # the same answer again: idempotent no-op
        check_transition(current.status, status)
        values: dict[str, Any] = {"status": status.value, "updated_at": at}
        if status is CommandStatus.ACKNOWLEDGED:
            values["acknowledged_at"] = at
        if status is CommandStatus.ERROR:
            values["error"] = detail or "error"
        self.conn.execute(update(commands).where(commands.c.id == command_id).values(values))
        transition = Transition(
            command_id,
            device_id,
            current.type,
            current.status,
            status,
            at,
            detail,
            current.attempts,
        )
        self._write_transitions([transition])
        return _with(current, values), transition

    def cancel(self, command_id: str, detail: str, at: datetime) -> tuple[Command, Transition]:
        current = self._locked(command_id)
        if current is None:
            raise UnknownCommand(f"no command {command_id!r}")
        check_transition(current.status, CommandStatus.CANCELLED)
        values: dict[str, Any] = {"status": CommandStatus.CANCELLED.value, "updated_at": at}
        self.conn.execute(update(commands).where(commands.c.id == command_id).values(values))
        transition = Transition(
            command_id,
            current.device_id,
            current.type,
            current.status,
            CommandStatus.CANCELLED,
            at,
            detail,
            current.attempts,
        )
        self._write_transitions([transition])
        return _with(current, values), transition

    def _locked(self, command_id: str) -> Command | None:
        stmt = select(commands).where(commands.c.id == command_id)
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        row = self.conn.execute(stmt).one_or_none()
        return None if row is None else _command(row)

    def _write_transitions(self, transitions: Sequence[Transition]) -> None:
        self.conn.execute(
            insert(command_transitions),
            [
                {
                    "command_id": t.command_id,
                    "from_status": None if t.from_status is None else t.from_status.value,
                    "to_status": t.to_status.value,
                    "detail": t.detail,
                    "at": t.at,
                }
                for t in transitions
            ],
        )

    # --- reads --------------------------------------------------------------------------

    def get(self, command_id: str) -> Command | None:
        row = self.conn.execute(select(commands).where(commands.c.id == command_id)).one_or_none()
        return None if row is None else _command(row)

    def transitions(self, command_id: str) -> list[Transition]:
        stmt = (
            select(
                command_transitions.c.from_status,
                command_transitions.c.to_status,
                command_transitions.c.detail,
                command_transitions.c.at,
                commands.c.device_id,
                commands.c.type,
            )
            .join(commands, commands.c.id == command_transitions.c.command_id)
            .where(command_transitions.c.command_id == command_id)
            .order_by(command_transitions.c.id)
        )
        return [
            Transition(
                command_id,
                r.device_id,
                CommandType(r.type),
                None if r.from_status is None else CommandStatus(r.from_status),
                CommandStatus(r.to_status),
                as_utc(r.at),
                r.detail,
            )
            for r in self.conn.execute(stmt)
        ]

    def for_device(self, device_id: str, *, limit: int = 100) -> list[Command]:
        stmt = (
            select(commands)
            .where(commands.c.device_id == device_id)
            .order_by(commands.c.created_at.desc(), commands.c.id)
            .limit(limit)
        )
        return [_command(r) for r in self.conn.execute(stmt)]

    def of_types(
        self, device_id: str, command_types: Collection[CommandType], *, limit: int
    ) -> list[Command]:
        if not command_types:
            return []
        stmt = (
            select(commands)
            .where(
                commands.c.device_id == device_id,
                commands.c.type.in_(sorted(t.value for t in command_types)),
            )
            .order_by(commands.c.created_at.desc(), commands.c.id)
            .limit(max(1, limit))
        )
        return [_command(r) for r in self.conn.execute(stmt)]


def _new_command(c: NewCommand) -> Command:
    return Command(
        id=c.id,
        device_id=c.device_id,
        type=c.type,
        payload=c.payload,
        priority=c.priority,
        status=CommandStatus.QUEUED,
        attempts=0,
        error=None,
        created_by=c.created_by,
        idempotency_key=c.idempotency_key,
        created_at=c.created_at,
        updated_at=c.created_at,
        delivered_at=None,
        acknowledged_at=None,
    )


def _with(c: Command, values: dict[str, Any]) -> Command:
    return Command(
        id=c.id,
        device_id=c.device_id,
        type=c.type,
        payload=c.payload,
        priority=c.priority,
        status=CommandStatus(values["status"]),
        attempts=c.attempts,
        error=values.get("error", c.error),
        created_by=c.created_by,
        idempotency_key=c.idempotency_key,
        created_at=c.created_at,
        updated_at=values["updated_at"],
        delivered_at=c.delivered_at,
        acknowledged_at=values.get("acknowledged_at", c.acknowledged_at),
    )
