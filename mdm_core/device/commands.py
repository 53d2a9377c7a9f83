"""Device commands: the command service (records, statuses, errors: :mod:`command_model`).

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

A full ``wipe`` is only ever for a ``corporate`` device, whatever the caller: ``enqueue`` /
``enqueue_many`` refuse it for any other ownership (:class:`FullWipeRefused`, audited,
nothing written), and a ``wipe`` still pending when a device whose ownership changed (a
re-enrollment as BYOD) checks in is cancelled at delivery, never handed to it. Who may ask for
a wipe, and the two-person rule, is :mod:`mdm_core.device.wipes`, the one module that
enqueues it.

NotNow follows NanoMDM: the device is busy (locked screen, in a call), the command waits for
the next time the device is ready, which for us is its next check-in.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from mdm_core.bus.events import DomainEvent
from mdm_core.device.command_model import (
    DEFAULT_PRIORITY,
    DELIVERABLE_STATUSES,
    FINAL_STATUSES,
    PAYLOAD_MODELS,
    RESULT_STATUSES,
    Command,
    CommandStatus,
    CommandType,
    FullWipeRefused,
    IdempotencyConflict,
    IllegalTransition,
    InactiveDevice,
    InvalidCommand,
    NewCommand,
    NoSuchDevice,
    Transition,
    UnknownCommand,
    check_transition,
    validate_payload,
)
from mdm_core.device.metrics import count_command
from mdm_core.domain.device_lifecycle import end_device_access
from mdm_core.posture.model import Ownership
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
    "FullWipeRefused",
    "check_transition",
    "validate_payload",
    "CommandService",
]


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
            if kind is CommandType.WIPE:
                self._refuse_wipe_unless_corporate(u, ids, created_by, at)
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
        recorded: list[DomainEvent] = []
        if any(c.type is CommandType.WIPE for c in pending):  # rare: off the hot path
            pending = self._cancel_refused_wipes(uow, device_id, pending, now, recorded)
        transitions = uow.commands.mark_delivered(pending, now)
        recorded.extend(_recorded(transitions))
        if events is not None:
            events.extend(recorded)
        elif recorded:
            uow.outbox.add(recorded)
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

    def _refuse_wipe_unless_corporate(
        self, uow: UnitOfWork, device_ids: list[str], actor: str, at: datetime
    ) -> None:
        """Raise :class:`FullWipeRefused` (all or nothing) if any known device is not
        corporate; the refusal is audited in a unit of work of its own, since this one rolls
        back. Unknown devices are left to the store (:class:`NoSuchDevice`)."""
        refused = []
        for device_id in device_ids:
            device = uow.devices.get(device_id)
            if device is not None and device.ownership is not Ownership.CORPORATE:
                refused.append((device_id, device.ownership.value))
        if not refused:
            return

        def audit() -> None:
            with self.storage.unit_of_work() as own:
                for device_id, ownership in refused:
                    own.audit.record(
                        actor,
                        "command.refused",
                        device_id,
                        "refused",
                        {
                            "type": CommandType.WIPE.value,
                            "reason": FullWipeRefused.reason,
                            "ownership": ownership,
                        },
                        at=at,
                    )

        uow.call_after(audit)
        raise FullWipeRefused(
            "a full wipe is only possible on a corporate device; refused for "
            + ", ".join(f"{d} ({o})" for d, o in refused)
            + " (use selective_wipe)"
        )

    @staticmethod
    def _cancel_refused_wipes(
        uow: UnitOfWork,
        device_id: str,
        pending: list[Command],
        now: datetime,
        events: list[DomainEvent],
    ) -> list[Command]:
        """``pending`` without its ``wipe`` commands when the device is not (or no longer)
        corporate: those are cancelled, with their events, and never delivered."""
        device = uow.devices.get(device_id)
        if device is not None and device.ownership is Ownership.CORPORATE:
            return pending
        ownership = "unknown" if device is None else device.ownership.value
        detail = (
            f"cancelled at delivery: {FullWipeRefused.reason} (the device is {ownership}; "
            "a full wipe is only ever delivered to a corporate device)"
        )
        keep = []
        for command in pending:
            if command.type is not CommandType.WIPE:
                keep.append(command)
                continue
            _, transition = uow.commands.cancel(command.id, detail, now)
            events.extend(_recorded([transition]))
            uow.audit.record(
                "system",
                "command.cancelled",
                device_id,
                "refused",
                {
                    "command_id": command.id,
                    "type": command.type.value,
                    "reason": FullWipeRefused.reason,
                    "ownership": ownership,
                },
                at=now,
            )
        return keep

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
