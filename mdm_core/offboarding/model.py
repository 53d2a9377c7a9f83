"""Offboarding records: the job, its devices, the report, the statuses and the errors.

What the service (:mod:`mdm_core.offboarding.service`), its store protocol
(:mod:`mdm_core.offboarding.store`) and the admin API share. Imports no storage module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from mdm_core.domain.errors import BadRequest, Conflict, EnrollmentError, NotFound

__all__ = [
    "TRIGGERS",
    "JobStatus",
    "DeviceState",
    "Action",
    "OPEN_STATUSES",
    "FINAL_DEVICE_STATES",
    "OffboardingJob",
    "JobDevice",
    "UserBlock",
    "CommandReport",
    "DeviceReport",
    "OffboardingReport",
    "JobNotFound",
    "OffboardingStarted",
    "NotBlocked",
    "UserOffboarded",
    "InvalidOffboarding",
    "check_user_id",
]

#: Who may start an offboarding job (the ``trigger`` of :meth:`OffboardingService.request`).
TRIGGERS = frozenset({"hr:bamboohr", "hr:generic", "directory:scim", "directory:ldap", "admin"})

_USER_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")


class JobStatus(StrEnum):
    SCHEDULED = "scheduled"  # effective later; cancel() still possible
    RUNNING = "running"  # the at-once steps ran; devices not all final yet
    DONE = "done"  # every device final
    CANCELLED = "cancelled"  # cancelled while scheduled, or halted by a reinstatement


OPEN_STATUSES = frozenset({JobStatus.SCHEDULED, JobStatus.RUNNING})


class Action(StrEnum):
    """What offboarding does to one device (``offboarding_action`` of the policy set)."""

    SELECTIVE_WIPE = "selective_wipe"
    FULL_WIPE = "full_wipe"
    LOCK_AND_RETIRE = "lock_and_retire"


class DeviceState(StrEnum):
    PENDING = "pending"  # the command is queued; waiting for the device's acknowledgement
    AWAITING_APPROVAL = "awaiting_approval"  # full wipe waits for a second admin (locked meanwhile)
    RETIRED = "retired"  # lock or selective wipe acknowledged, then retired
    WIPED = "wiped"  # full wipe acknowledged
    FAILED = "failed"  # the device answered error, the command or wipe request was closed
    SKIPPED = "skipped"  # the device was retired or wiped by someone else meanwhile
    CANCELLED = "cancelled"  # the user was reinstated first: its undelivered commands cancelled


FINAL_DEVICE_STATES = frozenset(
    {
        DeviceState.RETIRED,
        DeviceState.WIPED,
        DeviceState.FAILED,
        DeviceState.SKIPPED,
        DeviceState.CANCELLED,
    }
)


def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True, slots=True)
class OffboardingJob:
    id: str
    user_id: str
    username: str | None
    groups: tuple[str, ...]
    trigger: str
    source_ref: str | None
    actor: str
    reason: str | None
    status: JobStatus
    effective_at: datetime
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def actor_name(self) -> str:
        """The audit actor of everything the job does: ``offboarding:<job_id>``."""
        return f"offboarding:{self.id}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "username": self.username,
            "groups": list(self.groups),
            "trigger": self.trigger,
            "source_ref": self.source_ref,
            "actor": self.actor,
            "reason": self.reason,
            "status": self.status.value,
            "effective_at": _ts(self.effective_at),
            "created_at": _ts(self.created_at),
            "updated_at": _ts(self.updated_at),
            "started_at": _ts(self.started_at),
            "finished_at": _ts(self.finished_at),
        }


@dataclass(frozen=True, slots=True)
class JobDevice:
    job_id: str
    device_id: str
    ownership: str
    action: Action
    state: DeviceState
    updated_at: datetime
    command_id: str | None = None
    lock_command_id: str | None = None
    wipe_request_id: str | None = None
    detail: str | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL_DEVICE_STATES


@dataclass(frozen=True, slots=True)
class UserBlock:
    user_id: str
    job_id: str
    reason: str | None
    blocked_at: datetime


@dataclass(frozen=True, slots=True)
class CommandReport:
    """One command of a device's offboarding, with the time of each state it went through."""

    id: str
    type: str
    status: str
    error: str | None
    times: dict[str, str]  # state -> first time it entered it (queued, delivered, ...)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "status": self.status,
            "error": self.error,
            "times": dict(self.times),
        }


@dataclass(frozen=True, slots=True)
class DeviceReport:
    device: JobDevice
    commands: tuple[CommandReport, ...]
    wipe_request_status: str | None = None

    def to_json(self) -> dict[str, Any]:
        d = self.device
        return {
            "device_id": d.device_id,
            "ownership": d.ownership,
            "action": d.action.value,
            "state": d.state.value,
            "detail": d.detail,
            "updated_at": _ts(d.updated_at),
            "wipe_request_id": d.wipe_request_id,
            "wipe_request_status": self.wipe_request_status,
            "commands": [c.to_json() for c in self.commands],
        }


@dataclass(frozen=True, slots=True)
class OffboardingReport:
    job: OffboardingJob
    devices: tuple[DeviceReport, ...] = field(default_factory=tuple)
    blocked: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            **self.job.to_json(),
            "logins_blocked": self.blocked,
            "devices": [d.to_json() for d in self.devices],
        }


# --- errors ---------------------------------------------------------------------------------


class InvalidOffboarding(BadRequest):
    reason = "invalid_offboarding"


class JobNotFound(NotFound):
    reason = "unknown_offboarding_job"


class OffboardingStarted(Conflict):
    """Cancel of a job that already ran its at-once steps (or ended)."""

    reason = "offboarding_started"


class NotBlocked(NotFound):
    """Reinstate of a user offboarding never blocked (or already reinstated)."""

    reason = "user_not_offboarded"


class UserOffboarded(EnrollmentError):
    """Enrollment (token, serial registration, enrollment itself) for an offboarded user."""

    reason = "user_offboarded"
    status = 403


def check_user_id(user_id: str) -> str:
    if not isinstance(user_id, str) or not _USER_ID.fullmatch(user_id):
        raise InvalidOffboarding("user_id must be 1-128 characters of [A-Za-z0-9._:@-]")
    return user_id
