"""Device command records: types and payloads, statuses and the status machine, errors.

What the command service (:mod:`mdm_core.device.commands`) and the command store protocol
(:mod:`mdm_core.storage.queue`) share: :class:`NewCommand`, :class:`Command`,
:class:`Transition`, :class:`CommandType`, :class:`CommandStatus`, :func:`check_transition`,
:func:`validate_payload` and the errors a store raises. It imports no storage module, so the
service -> unit of work -> store protocol -> records chain has no cycle, not even for type
checking.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from mdm_core.bus.events import DomainEvent, EventType
from mdm_core.domain.errors import Conflict, MdmError, NotFound

__all__ = [
    "CommandType",
    "CommandStatus",
    "RESULT_STATUSES",
    "FINAL_STATUSES",
    "DELIVERABLE_STATUSES",
    "PAYLOAD_MODELS",
    "DEFAULT_PRIORITY",
    "Command",
    "NewCommand",
    "Transition",
    "InvalidCommand",
    "UnknownCommand",
    "IllegalTransition",
    "IdempotencyConflict",
    "NoSuchDevice",
    "InactiveDevice",
    "FullWipeRefused",
    "check_transition",
    "validate_payload",
]


class CommandType(StrEnum):
    LOCK = "lock"
    WIPE = "wipe"
    SELECTIVE_WIPE = "selective_wipe"
    INSTALL_APP = "install_app"
    REMOVE_APP = "remove_app"
    APPLY_CONFIGURATION = "apply_configuration"
    REQUEST_CHECKIN = "request_checkin"
    INSTALL_CERTIFICATE = "install_certificate"
    REMOVE_CERTIFICATE = "remove_certificate"


class CommandStatus(StrEnum):
    QUEUED = "queued"
    DELIVERED = "delivered"
    ACKNOWLEDGED = "acknowledged"
    ERROR = "error"
    NOT_NOW = "not_now"
    CANCELLED = "cancelled"


#: What a device may answer.
RESULT_STATUSES = frozenset(
    {CommandStatus.ACKNOWLEDGED, CommandStatus.ERROR, CommandStatus.NOT_NOW}
)
FINAL_STATUSES = frozenset(
    {CommandStatus.ACKNOWLEDGED, CommandStatus.ERROR, CommandStatus.CANCELLED}
)
#: Delivered at the next check-in: new, unanswered (re-delivery), or deferred by NotNow.
DELIVERABLE_STATUSES = frozenset(
    {CommandStatus.QUEUED, CommandStatus.DELIVERED, CommandStatus.NOT_NOW}
)

_TRANSITIONS: dict[CommandStatus | None, frozenset[CommandStatus]] = {
    None: frozenset({CommandStatus.QUEUED}),
    CommandStatus.QUEUED: frozenset({CommandStatus.DELIVERED, CommandStatus.CANCELLED}),
    CommandStatus.DELIVERED: frozenset(
        {
            CommandStatus.DELIVERED,  # re-delivery of an unanswered command
            CommandStatus.ACKNOWLEDGED,
            CommandStatus.ERROR,
            CommandStatus.NOT_NOW,
            CommandStatus.CANCELLED,
        }
    ),
    CommandStatus.NOT_NOW: frozenset({CommandStatus.DELIVERED, CommandStatus.CANCELLED}),
    CommandStatus.ACKNOWLEDGED: frozenset(),
    CommandStatus.ERROR: frozenset(),
    CommandStatus.CANCELLED: frozenset(),
}


# --- errors ---------------------------------------------------------------------------------


class InvalidCommand(MdmError):
    """Unknown command type or a payload that does not validate for its type."""

    reason = "invalid_command"
    status = 422


class UnknownCommand(NotFound):
    """No such command for this device (another device's command is reported the same way)."""

    reason = "unknown_command"


class IllegalTransition(Conflict):
    reason = "illegal_transition"


class IdempotencyConflict(Conflict):
    """The idempotency key was already used for a different command on this device."""

    reason = "idempotency_conflict"


class NoSuchDevice(NotFound):
    reason = "unknown_device"


class InactiveDevice(Conflict):
    """The device is retired or wiped: it will never check in again, so nothing is queued."""

    reason = "device_inactive"


class FullWipeRefused(Conflict):
    """A full wipe (``wipe``) of a device whose ownership is not ``corporate``: only a
    corporate device may ever be erased; a BYOD device gets a selective wipe. Defined here so
    the command service can refuse it whatever the caller; :mod:`mdm_core.device.wipes`
    re-exports it."""

    reason = "full_wipe_not_corporate"


def check_transition(current: CommandStatus | None, new: CommandStatus) -> None:
    """Raise :class:`IllegalTransition` unless ``current -> new`` is in the status machine."""
    if new not in _TRANSITIONS[current]:
        raise IllegalTransition(
            f"a command cannot go from {current.value if current else 'nothing'} to {new.value}"
        )


# --- payloads -------------------------------------------------------------------------------

Text = Field(min_length=1, max_length=256)


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class LockPayload(_Payload):
    message: str | None = Field(default=None, max_length=500)
    phone_number: str | None = Field(default=None, pattern=r"^\+?[0-9][0-9 ()\-.]{2,31}$")


class WipePayload(_Payload):
    preserve_data_plan: bool = False
    pin: str | None = Field(default=None, pattern=r"^[0-9]{6}$")  # macOS EraseDevice PIN


#: A managed item's name in a selective wipe: an app id (``com.example.vpn``), a certificate
#: or configuration name. No whitespace, no path separator: a name is never a path.
MANAGED_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._:+@!~-]{0,255}$"
ManagedName = Annotated[str, Field(pattern=MANAGED_NAME_PATTERN)]
MAX_WIPE_APPS = 2000  # as many as a posture can report (mdm_core.posture.model)
MAX_WIPE_CERTIFICATES = 500
MAX_WIPE_CONFIGURATIONS = 500


def _distinct(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("names must be distinct")
    return values


class SelectiveWipePayload(_Payload):
    """Remove what the MDM put there, and only that: the work container (work profile,
    managed-data area), the named managed apps and their data, the named MDM-installed
    certificates and configurations. There is no field for anything else (a path, a
    personal app, "everything"): extra keys are refused. Built by
    :func:`mdm_core.device.selective_wipe.selective_wipe_payload` from what the MDM
    manages on the device."""

    reason: str | None = Field(default=None, max_length=256)
    work_container: bool = True
    apps: Annotated[list[ManagedName], AfterValidator(_distinct)] = Field(
        default_factory=list, max_length=MAX_WIPE_APPS
    )
    certificates: Annotated[list[ManagedName], AfterValidator(_distinct)] = Field(
        default_factory=list, max_length=MAX_WIPE_CERTIFICATES
    )
    configurations: Annotated[list[ManagedName], AfterValidator(_distinct)] = Field(
        default_factory=list, max_length=MAX_WIPE_CONFIGURATIONS
    )


class InstallAppPayload(_Payload):
    app_id: str = Text
    version: str | None = Field(default=None, max_length=64)
    source: str = Field(default="store", pattern=r"^(store|enterprise)$")
    manifest_url: str | None = Field(default=None, max_length=2048, pattern=r"^https://")


class RemoveAppPayload(_Payload):
    app_id: str = Text


class ApplyConfigurationPayload(_Payload):
    configuration_id: str = Text
    settings: dict[str, Any] = Field(default_factory=dict, max_length=200)


class RequestCheckinPayload(_Payload):
    pass


class CertificatePayload(_Payload):
    """A certificate by the name configuration policies give it (the device's MDM channel
    resolves the name to the certificate or SCEP/ACME profile it installs)."""

    name: str = Text


PAYLOAD_MODELS: dict[CommandType, type[_Payload]] = {
    CommandType.LOCK: LockPayload,
    CommandType.WIPE: WipePayload,
    CommandType.SELECTIVE_WIPE: SelectiveWipePayload,
    CommandType.INSTALL_APP: InstallAppPayload,
    CommandType.REMOVE_APP: RemoveAppPayload,
    CommandType.APPLY_CONFIGURATION: ApplyConfigurationPayload,
    CommandType.REQUEST_CHECKIN: RequestCheckinPayload,
    CommandType.INSTALL_CERTIFICATE: CertificatePayload,
    CommandType.REMOVE_CERTIFICATE: CertificatePayload,
}

#: Higher is delivered first. Protective commands jump the queue.
DEFAULT_PRIORITY: dict[CommandType, int] = {
    CommandType.WIPE: 100,
    CommandType.SELECTIVE_WIPE: 100,
    CommandType.LOCK: 90,
    CommandType.REMOVE_APP: 20,
    CommandType.REMOVE_CERTIFICATE: 20,
    CommandType.APPLY_CONFIGURATION: 10,
    CommandType.INSTALL_APP: 10,
    CommandType.INSTALL_CERTIFICATE: 10,
    CommandType.REQUEST_CHECKIN: 0,
}


def validate_payload(command_type: str, payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """The payload as stored: validated against its type's model, defaults filled in."""
    try:
        kind = CommandType(command_type)
    except ValueError:
        raise InvalidCommand(
            f"unknown command type {command_type!r}; expected one of "
            f"{', '.join(t.value for t in CommandType)}"
        ) from None
    try:
        model = PAYLOAD_MODELS[kind].model_validate(dict(payload or {}))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        raise InvalidCommand(f"{kind.value} payload: {where}: {err['msg']}") from None
    return model.model_dump(mode="json")


# --- records --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewCommand:
    id: str
    device_id: str
    type: CommandType
    payload: dict[str, Any]
    priority: int
    created_by: str
    created_at: datetime
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Command:
    id: str
    device_id: str
    type: CommandType
    payload: dict[str, Any]
    priority: int
    status: CommandStatus
    attempts: int
    error: str | None
    created_by: str
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None
    acknowledged_at: datetime | None

    def for_device(self) -> dict[str, Any]:
        """What the device receives."""
        return {"id": self.id, "type": self.type.value, "payload": self.payload}

    def to_json(self) -> dict[str, Any]:
        def ts(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "id": self.id,
            "device_id": self.device_id,
            "type": self.type.value,
            "payload": self.payload,
            "priority": self.priority,
            "status": self.status.value,
            "attempts": self.attempts,
            "error": self.error,
            "created_by": self.created_by,
            "idempotency_key": self.idempotency_key,
            "created_at": ts(self.created_at),
            "updated_at": ts(self.updated_at),
            "delivered_at": ts(self.delivered_at),
            "acknowledged_at": ts(self.acknowledged_at),
        }


@dataclass(frozen=True, slots=True)
class Transition:
    command_id: str
    device_id: str
    command_type: CommandType
    from_status: CommandStatus | None
    to_status: CommandStatus
    at: datetime
    detail: str | None = None
    attempts: int = 0

    def event(self) -> DomainEvent:
        return DomainEvent(
            type=EventType.COMMAND_STATE_CHANGED,
            subject=self.command_id,
            payload={
                "command_id": self.command_id,
                "device_id": self.device_id,
                "command_type": self.command_type.value,
                "from": None if self.from_status is None else self.from_status.value,
                "to": self.to_status.value,
                "detail": self.detail,
                "attempts": self.attempts,
            },
            occurred_at=self.at,
        )
