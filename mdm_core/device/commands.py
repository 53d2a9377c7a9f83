"""Device commands: types and their payloads, the status machine, and the command service.

A command is queued for one device (``enqueue``) or the same command for many
(``enqueue_many``), delivered at the device's next check-in (or long-poll) in priority order,
and answered by the device::

    queued ──> delivered ──> acknowledged
      │          │  ▲ │ ──> error
      │          │  │ └───> not_now ──> delivered (again, at the next check-in)
      └──────────┴──┴─────> cancelled  (from queued, delivered or not_now)

A delivered command that is not answered is delivered again at the next check-in (delivery
is idempotent; the device acknowledges by id). ``acknowledged``, ``error`` and ``cancelled``
are final. Retired and wiped devices get no new commands (what the device's status becomes
after a wipe is the offboarding flow's decision, not the queue's), but an acknowledged
``wipe`` or ``selective_wipe`` revokes the device's access credentials in the same unit of
work (:mod:`mdm_core.domain.device_lifecycle`): what was on the device is gone, and any copy of its
tokens dies with it. Every transition is
written to ``command_transitions`` with its time and detail, and a ``command.state_changed``
event goes to the outbox in the same unit of work.

NotNow follows NanoMDM: the device is busy (locked screen, in a call), the command waits for
the next time the device is ready, which for us is its next check-in.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mdm_core.bus.events import DomainEvent, EventType
from mdm_core.device.metrics import count_command
from mdm_core.domain.device_lifecycle import end_device_access
from mdm_core.domain.errors import Conflict, MdmError, NotFound
from mdm_core.storage.uow import Storage, UnitOfWork

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
    "check_transition",
    "validate_payload",
    "CommandService",
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


class SelectiveWipePayload(_Payload):
    """Remove what the MDM put there (work profile, managed apps and their data)."""

    reason: str | None = Field(default=None, max_length=256)


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


_T = TypeVar("_T")


def _recorded(transitions: Iterable[Transition]) -> list[DomainEvent]:
    """The events of transitions being recorded, each counted in the commands metric."""
    events = []
    for t in transitions:
        count_command(t.command_type.value, t.to_status.value)
        events.append(t.event())
    return events


# --- service --------------------------------------------------------------------------------

MAX_DETAIL = 2000


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


class CommandService:
    """Queue, deliver and settle device commands; each call is one unit of work (or joins
    the one passed as ``uow``), and every transition's event is written to the outbox."""

    def __init__(self, storage: Storage, *, kick: Callable[[], None] | None = None) -> None:
        if storage is None:
            raise ValueError("CommandService needs a storage")
        self.storage = storage
        self._kick = kick or (lambda: None)

    def enqueue(
        self,
        device_id: str,
        command_type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        created_by: str,
        priority: int | None = None,
        idempotency_key: str | None = None,
        now: datetime | None = None,
        uow: UnitOfWork | None = None,
    ) -> Command:
        """Queue one command for one device. With ``idempotency_key``, enqueueing the same
        command again returns the existing one (a double-fired wipe is one wipe); the same key
        for a different command raises :class:`IdempotencyConflict`. Unknown device:
        :class:`NoSuchDevice`."""
        return self.enqueue_many(
            [device_id],
            command_type,
            payload,
            created_by=created_by,
            priority=priority,
            idempotency_key=idempotency_key,
            now=now,
            uow=uow,
        )[0]

    def enqueue_many(
        self,
        device_ids: Iterable[str],
        command_type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        created_by: str,
        priority: int | None = None,
        idempotency_key: str | None = None,
        now: datetime | None = None,
        uow: UnitOfWork | None = None,
    ) -> list[Command]:
        """The same command for each of ``device_ids`` (one command row per device), all or
        nothing. Returns the commands in the order of ``device_ids``."""
        clean = validate_payload(command_type, payload)
        kind = CommandType(command_type)
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 128:
            raise InvalidCommand("idempotency_key must be 1 to 128 characters")
        ids = list(dict.fromkeys(device_ids))
        if not ids:
            return []
        at = _now(now)
        news = [
            NewCommand(
                id=str(uuid.uuid4()),
                device_id=device_id,
                type=kind,
                payload=clean,
                priority=DEFAULT_PRIORITY[kind] if priority is None else priority,
                created_by=created_by,
                created_at=at,
                idempotency_key=idempotency_key,
            )
            for device_id in ids
        ]

        def run(u: UnitOfWork) -> list[Command]:
            results = u.commands.enqueue(news)
            created = [cmd for cmd, is_new in results if is_new]
            u.outbox.add(
                _recorded(
                    Transition(c.id, c.device_id, c.type, None, CommandStatus.QUEUED, at)
                    for c in created
                )
            )
            for c in created:  # who asked for what, beside the command's own transitions
                u.audit.record(
                    created_by,
                    "command.queued",
                    c.device_id,
                    "ok",
                    {"command_id": c.id, "type": c.type.value, "priority": c.priority},
                    at=at,
                )
            return [cmd for cmd, _ in results]

        return self._run(run, uow)

    def deliver(
        self,
        uow: UnitOfWork,
        device_id: str,
        *,
        now: datetime,
        limit: int = 10,
        events: list[DomainEvent] | None = None,
    ) -> list[Command]:
        """Inside the caller's unit of work: the commands to hand to ``device_id`` now (new,
        unanswered and NotNow-deferred, highest priority first), marked delivered. Their
        events are appended to ``events`` when given (the caller writes them with its own, in
        one insert), else written to the outbox here."""
        pending = uow.commands.next_commands(device_id, limit)
        if not pending:
            return []
        transitions = uow.commands.mark_delivered(pending, now)
        if events is not None:
            events.extend(_recorded(transitions))
        else:
            uow.outbox.add(_recorded(transitions))
        by_id = {t.command_id: t for t in transitions}
        return [_delivered(c, now, by_id[c.id].attempts) for c in pending]

    def record_result(
        self,
        device_id: str,
        command_id: str,
        status: str,
        detail: str | None = None,
        *,
        now: datetime | None = None,
        uow: UnitOfWork | None = None,
    ) -> Command:
        """The device's answer to a delivered command. Repeating the same answer is a no-op;
        a command of another device is :class:`UnknownCommand`; an answer the status machine
        does not allow (to a cancelled command, an ``error`` after ``acknowledged``) is
        :class:`IllegalTransition`."""
        try:
            new = CommandStatus(status)
        except ValueError:
            new = None
        if new not in RESULT_STATUSES or new is None:
            raise InvalidCommand("status must be acknowledged, error or not_now")
        if detail is not None and len(detail) > MAX_DETAIL:
            raise InvalidCommand(f"detail longer than {MAX_DETAIL} characters")
        at = _now(now)

        def run(u: UnitOfWork) -> Command:
            command, transition = u.commands.record_result(device_id, command_id, new, detail, at)
            if transition is None:
                return command
            u.outbox.add(_recorded([transition]))
            if new is CommandStatus.ACKNOWLEDGED and command.type in _WIPES:
                end_device_access(
                    u, command.device_id, reason=f"{command.type.value}_acknowledged", at=at
                )
            return command

        return self._run(run, uow)

    def cancel(
        self,
        command_id: str,
        *,
        by: str,
        reason: str | None = None,
        now: datetime | None = None,
        uow: UnitOfWork | None = None,
    ) -> Command:
        """Cancel a command that is not final yet; unknown id: :class:`UnknownCommand`."""
        at = _now(now)
        detail = f"cancelled by {by}" + (f": {reason}" if reason else "")

        def run(u: UnitOfWork) -> Command:
            command, transition = u.commands.cancel(command_id, detail[:MAX_DETAIL], at)
            u.outbox.add(_recorded([transition]))
            return command

        return self._run(run, uow)

    def get(self, command_id: str) -> Command | None:
        with self.storage.unit_of_work() as u:
            return u.commands.get(command_id)

    def transitions(self, command_id: str) -> list[Transition]:
        with self.storage.unit_of_work() as u:
            return u.commands.transitions(command_id)

    def for_device(self, device_id: str, *, limit: int = 100) -> list[Command]:
        with self.storage.unit_of_work() as u:
            return u.commands.for_device(device_id, limit=limit)

    def _run(self, fn: Callable[[UnitOfWork], _T], uow: UnitOfWork | None) -> _T:
        """Run ``fn`` in ``uow`` or a new unit of work; kick the relay once it has ended."""
        if uow is not None:
            uow.call_after(self._kick)
            return fn(uow)
        with self.storage.unit_of_work() as u:
            u.call_after(self._kick)
            return fn(u)


#: Commands whose acknowledgement ends every credential the device held.
_WIPES = frozenset({CommandType.WIPE, CommandType.SELECTIVE_WIPE})


def _delivered(command: Command, at: datetime, attempts: int) -> Command:
    return Command(
        id=command.id,
        device_id=command.device_id,
        type=command.type,
        payload=command.payload,
        priority=command.priority,
        status=CommandStatus.DELIVERED,
        attempts=attempts,
        error=command.error,
        created_by=command.created_by,
        idempotency_key=command.idempotency_key,
        created_at=command.created_at,
        updated_at=at,
        delivered_at=at,
        acknowledged_at=command.acknowledged_at,
    )
