"""Read side of device administration: a bounded, filtered page of devices (keyset cursor),
one device's record with its latest posture summary and compliance state, and a device's
commands with their transitions, as JSON-ready dicts.

Reads the core's tables through the caller's unit of work (no writes). The posture summary
is the already privacy-filtered posture without the app inventories (their counts only).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from mdm_core.device.command_model import Command, Transition
from mdm_core.domain.model import DeviceRecord
from mdm_core.storage.sql.devices import DEVICE_COLUMNS, device_from_row
from mdm_core.storage.sql.tables import devices
from mdm_core.storage.sql.uow import SqlUnitOfWork

__all__ = [
    "MAX_PAGE",
    "DeviceFilter",
    "BadCursor",
    "list_devices",
    "device_json",
    "device_detail",
    "command_json",
    "encode_cursor",
    "decode_cursor",
]

MAX_PAGE = 200


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class DeviceFilter:
    user_id: str | None = None
    status: str | None = None
    ownership: str | None = None


def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def encode_cursor(device_id: str) -> str:
    return base64.urlsafe_b64encode(device_id.encode()).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor("cursor is not one this API gave") from None
    if not 1 <= len(value) <= 64:
        raise BadCursor("cursor is not one this API gave")
    return value


def device_json(device: DeviceRecord) -> dict[str, Any]:
    return {
        "id": device.id,
        "user_id": device.user_id,
        "platform": device.platform.value,
        "ownership": device.ownership.value,
        "status": device.status.value,
        "status_reason": device.status_reason,
        "serial_number": device.serial_number,
        "enrolled_at": _ts(device.enrolled_at),
        "last_checkin_at": _ts(device.last_checkin_at),
    }


def list_devices(
    uow: SqlUnitOfWork, wanted: DeviceFilter, *, limit: int, after: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Up to ``limit`` devices ordered by id after ``after``, and the next page's cursor."""
    stmt = select(*DEVICE_COLUMNS).order_by(devices.c.id).limit(limit + 1)
    if wanted.user_id is not None:
        stmt = stmt.where(devices.c.user_id == wanted.user_id)
    if wanted.status is not None:
        stmt = stmt.where(devices.c.status == wanted.status)
    if wanted.ownership is not None:
        stmt = stmt.where(devices.c.ownership == wanted.ownership)
    if after is not None:
        stmt = stmt.where(devices.c.id > after)
    rows = [device_from_row(r) for r in uow.conn.execute(stmt)]
    page = rows[:limit]
    more = len(rows) > limit
    return [device_json(d) for d in page], (encode_cursor(page[-1].id) if more else None)


_SUMMARY_FIELDS = (
    "platform",
    "collected_at",
    "os_version",
    "os_build",
    "security_patch_level",
    "storage_encrypted",
    "passcode_set",
    "jailbroken",
    "screen_lock_enabled",
    "firewall_enabled",
    "secure_boot",
    "agent_present",
    "mdm_profile_present",
    "work_profile_present",
    "agent_version",
    "model",
)


def device_detail(uow: SqlUnitOfWork, device: DeviceRecord) -> dict[str, Any]:
    """The record, the latest posture summary (or ``None``) and the compliance state."""
    latest = uow.posture.latest(device.id)
    posture: dict[str, Any] | None = None
    if latest is not None:
        dumped = latest.posture.model_dump(mode="json", include=set(_SUMMARY_FIELDS))
        posture = {
            "seq": latest.seq,
            "received_at": _ts(latest.received_at),
            **dumped,
            "managed_apps": len(latest.posture.managed_apps),
            "installed_apps": len(latest.posture.installed_apps),
        }
    state = uow.compliance.get_state(device.id)
    compliance: dict[str, Any] = (
        {"state": "unknown", "outcome": None, "reasons": [], "evaluated_at": None}
        if state is None
        else {
            "state": state.state.value,
            "outcome": state.outcome,
            "reasons": state.reasons,
            "policy_ids": state.policy_ids,
            "evaluated_at": _ts(state.evaluated_at),
        }
    )
    return {"device": device_json(device), "posture": posture, "compliance": compliance}


def command_json(command: Command, transitions: list[Transition]) -> dict[str, Any]:
    body = command.to_json()
    body["transitions"] = [
        {
            "from": None if t.from_status is None else t.from_status.value,
            "to": t.to_status.value,
            "at": _ts(t.at),
            "detail": t.detail,
            "attempts": t.attempts,
        }
        for t in transitions
    ]
    return body
