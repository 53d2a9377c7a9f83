"""Shared steps of the offboarding tests: check in, acknowledge, read commands and audit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from mdm_core.device.command_model import Command
from mdm_core.device.proof import AuthenticatedDevice
from mdm_core.directory.mirror import DirectoryService
from mdm_core.runtime import MdmCore
from mdm_core.simulator.reports import DeviceTraits, native_reports
from mdm_core.storage.directory import DirectoryGroup, DirectoryUser, MemberKind
from mdm_core.storage.sql.tables import audit_log, commands

__all__ = ["add_user", "check_in", "ack", "commands_of", "audit_actions", "now"]


def now() -> datetime:
    return datetime.now(UTC)


def add_user(
    directory: DirectoryService, user_id: str, groups: tuple[str, ...] = (), active: bool = True
) -> None:
    directory.upsert_user(
        DirectoryUser(id=user_id, username=user_id, active=active, source="local", updated_at=now())
    )
    for name in groups:
        directory.upsert_group(
            DirectoryGroup(id=f"g-{name}", name=name, source="local", updated_at=now())
        )
        directory.add_member(f"g-{name}", user_id, MemberKind.USER)


#: The command types offboarding queues (convergence may queue app installs beside them).
PROTECTIVE = ("lock", "wipe", "selective_wipe")


def check_in(core: MdmCore, device_id: str, at: datetime | None = None) -> list[Command]:
    """One round of the device's check-ins at ``at``: the lock/wipe commands it was handed."""
    at = at or now()
    with core.storage.unit_of_work() as uow:
        record = uow.devices.get(device_id)
    assert record is not None
    auth = AuthenticatedDevice(
        device=record, cert_serial=record.cert_serial or "", key_thumbprint=""
    )
    out: list[Command] = []
    for fmt, report in native_reports(
        record.platform.value, record.serial_number or "SN1", record.ownership.value,
        DeviceTraits(), now=at,
    ):  # fmt: skip
        for command in core.checkin.check_in(auth, report, fmt, now=at).commands:
            if command.type.value in PROTECTIVE and command.id not in {
                c.id for c in out
            }:  # re-delivered in the same round
                out.append(command)
    return out


def ack(
    core: MdmCore, command: Command, at: datetime | None = None, status: str = "acknowledged"
) -> None:
    core.commands.record_result(command.device_id, command.id, status, now=at or now())


def commands_of(core: MdmCore, device_id: str) -> list[dict[str, Any]]:
    with core.database.engine.connect() as conn:
        rows = conn.execute(
            select(commands.c.type, commands.c.status, commands.c.idempotency_key, commands.c.id)
            .where(commands.c.device_id == device_id, commands.c.type.in_(PROTECTIVE))
            .order_by(commands.c.created_at)
        ).all()
    return [dict(r._mapping) for r in rows]


def audit_actions(core: MdmCore, prefix: str = "offboarding.") -> list[tuple[str, str, str]]:
    with core.database.engine.connect() as conn:
        rows = conn.execute(
            select(audit_log.c.actor, audit_log.c.action, audit_log.c.subject)
            .where(audit_log.c.action.like(prefix + "%"))
            .order_by(audit_log.c.id)
        ).all()
    return [(r.actor, r.action, r.subject) for r in rows]
