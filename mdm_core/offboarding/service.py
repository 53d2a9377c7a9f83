"""The durable offboarding job: block at once, then wipe, lock or retire every device.

:meth:`OffboardingService.request` runs INSIDE the caller's unit of work (the HR delivery's,
the SCIM request's, the LDAP sync's), so the job and its at-once effects commit with the
trigger or not at all. It is idempotent: the user's open job is returned as is (a scheduled
one is brought forward when the new trigger is effective earlier), and the same ``(trigger,
source_ref)`` returns the job it made. Effective now (``effective_at`` None or past):

1. the user's logins and enrollment are blocked (``user_blocks``; :func:`is_blocked` is read
   by the directory mirror's :func:`~mdm_core.directory.mirror.user_context` and by
   enrollment), until :meth:`OffboardingService.reinstate`: a later sync saying "active", or
   the account deleted and re-created, does not lift it;
2. sessions and tokens are revoked (:func:`~mdm_core.domain.device_lifecycle.end_user_access`,
   which writes ``access.revoked``) and ``user.offboarded`` goes to the outbox;
3. per device of the user (by ``user_id`` on the device rows; not retired or wiped), the
   offboarding policy's action (:func:`~mdm_core.policy.configuration.offboarding_action`):
   BYOD a ``selective_wipe`` naming only what the MDM put there
   (:func:`~mdm_core.device.selective_wipe.selective_wipe_payload`); corporate ``full_wipe``
   a full-wipe request (:class:`FullWipes`; when it waits for a second admin, a ``lock`` meanwhile);
   corporate ``lock_and_retire`` a ``lock``. Idempotency key ``offboarding:<job>:<device>``.

Later effective dates are stored ``scheduled`` (cancellable). :meth:`run_due` (one process
at a time, lease ``offboarding``) fires due jobs and advances running ones, each step in its
own small unit of work, conditional on the row's state, so a crash at any point loses nothing
and repeats nothing: a device is retired only AFTER its lock or selective wipe is
acknowledged, marked ``wiped`` after its full wipe is; never before (a retired device cannot
check in, and a device offline for weeks must still get its command at its next check-in).
Every step is audited (``offboarding.*``, actor ``offboarding:<job_id>``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from mdm_core.bus.events import DomainEvent, EventType
from mdm_core.device.command_model import DELIVERABLE_STATUSES, CommandStatus, CommandType
from mdm_core.device.commands import CommandService
from mdm_core.device.enrollment import EnrollmentService
from mdm_core.device.selective_wipe import selective_wipe_payload
from mdm_core.directory.mirror import effective_group_names
from mdm_core.domain.device_lifecycle import change_status, end_user_access
from mdm_core.domain.errors import Conflict, NotFound
from mdm_core.domain.model import DeviceRecord, DeviceStatus
from mdm_core.offboarding.model import (
    OPEN_STATUSES,
    TRIGGERS,
    Action,
    CommandReport,
    DeviceReport,
    DeviceState,
    InvalidOffboarding,
    JobDevice,
    JobNotFound,
    JobStatus,
    NotBlocked,
    OffboardingJob,
    OffboardingReport,
    OffboardingStarted,
    UserBlock,
    check_user_id,
)
from mdm_core.policy.compiled import CompiledPolicySet
from mdm_core.policy.configuration import offboarding_action
from mdm_core.posture.model import Ownership
from mdm_core.storage.uow import Storage, UnitOfWork

__all__ = [
    "LEASE_NAME",
    "DEFAULT_INTERVAL",
    "FullWipes",
    "WipeRequestView",
    "SelectivePayload",
    "OffboardingService",
    "is_blocked",
    "LOCK_MESSAGE",
]

log = logging.getLogger(__name__)

LEASE_NAME = "offboarding"
DEFAULT_INTERVAL = timedelta(seconds=5)
LOCK_MESSAGE = "This device is no longer managed by your organisation."
_GONE = frozenset({DeviceStatus.RETIRED, DeviceStatus.WIPED})
_MAX_TEXT = 256


class WipeRequestView(Protocol):
    """What offboarding reads of a full-wipe request (``mdm_core.device.wipes.WipeRequest``)."""

    @property
    def id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def command_id(self) -> str | None: ...


class FullWipes(Protocol):
    """The full-wipe rights (``mdm_core.device.wipes.WipeService``): corporate only, the
    two-person rule; the only path that queues a ``wipe``."""

    def request_full_wipe(
        self,
        device_id: str,
        *,
        requested_by: str,
        reason: str,
        groups: frozenset[str] | None = None,
        uow: UnitOfWork | None = None,
        now: datetime | None = None,
    ) -> WipeRequestView: ...

    def get(self, request_id: str, *, uow: UnitOfWork | None = None) -> WipeRequestView:
        """The request; ``NotFound`` for an unknown id."""
        ...

    def cancel(
        self,
        request_id: str,
        *,
        by: str,
        reason: str,
        uow: UnitOfWork | None = None,
        now: datetime | None = None,
    ) -> WipeRequestView:
        """Withdraw a request still waiting for approval; ``Conflict`` once it is closed."""
        ...


#: ``(uow, device_id, reason) -> payload`` of the device's ``selective_wipe``
#: (``mdm_core.device.selective_wipe.selective_wipe_payload``).
SelectivePayload = Callable[[UnitOfWork, str, str | None], Mapping[str, Any]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def is_blocked(uow: UnitOfWork, user_id: str) -> bool:
    """Offboarding blocked this user's logins and enrollment (until reinstated)."""
    return uow.offboarding.blocked(user_id) is not None


@dataclass(slots=True)
class _Tick:
    steps: int = 0


#: Commands that put managed data on a device: cancelled when the device is offboarded.
_INSTALLS = frozenset(
    {CommandType.INSTALL_APP, CommandType.INSTALL_CERTIFICATE, CommandType.APPLY_CONFIGURATION}
)


class OffboardingService:
    """Offboarding jobs (see the module docstring)."""

    def __init__(
        self,
        storage: Storage,
        policies: Callable[[], CompiledPolicySet],
        wipes: FullWipes,
        commands: CommandService,
        *,
        enrollment: EnrollmentService,
        selective_payload: SelectivePayload | None = None,
        clock: Callable[[], datetime] = _utcnow,
        holder: str | None = None,
        interval: timedelta = DEFAULT_INTERVAL,
    ) -> None:
        if storage is None or policies is None or wipes is None or commands is None:
            raise ValueError("OffboardingService needs storage, policies, wipes and commands")
        if interval <= timedelta(0):
            raise ValueError("the offboarding interval must be positive")
        self.storage = storage
        self.policies = policies
        self.wipes = wipes
        self.commands = commands
        self.enrollment = enrollment
        #: What a BYOD device's selective wipe names (only what the MDM put there).
        self.selective_payload: SelectivePayload = selective_payload or self._managed_data
        self.clock = clock
        self.interval = interval
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_ttl = max(interval * 4, timedelta(minutes=1))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- request --------------------------------------------------------------------------

    def request(
        self,
        uow: UnitOfWork,
        *,
        user_id: str,
        trigger: str,
        source_ref: str | None,
        effective_at: datetime | None,
        actor: str,
        username: str | None = None,
        groups: frozenset[str] | None = None,
        reason: str | None = None,
    ) -> OffboardingJob:
        """Start (or find) the user's offboarding, in the caller's unit of work."""
        check_user_id(user_id)
        if trigger not in TRIGGERS:
            raise InvalidOffboarding(f"unknown trigger {trigger!r}")
        if source_ref is not None and not 1 <= len(source_ref) <= _MAX_TEXT:
            raise InvalidOffboarding("source_ref must be 1-256 characters")
        if not actor or len(actor) > 128:
            raise InvalidOffboarding("actor must be 1-128 characters")
        if effective_at is not None and effective_at.tzinfo is None:
            raise InvalidOffboarding("effective_at must carry a time zone")
        now = self.clock()
        if source_ref is not None and (made := uow.offboarding.by_source(trigger, source_ref)):
            return made
        if (open_job := uow.offboarding.open_for_user(user_id)) is not None:
            return self._bring_forward(uow, open_job, effective_at, now, trigger, actor)
        user = uow.directory_users.get(user_id)
        if user is not None:
            username = username or user.username
            if groups is None:
                groups = effective_group_names(uow, user_id)
        if user is None and username is None and not uow.devices.list_for_user(user_id):
            raise NotFound(f"unknown user {user_id}")
        when = now if effective_at is None or effective_at <= now else effective_at
        job = OffboardingJob(
            id=uuid.uuid4().hex,
            user_id=user_id,
            username=username,
            groups=tuple(sorted(groups or ())),
            trigger=trigger,
            source_ref=source_ref,
            actor=actor,
            reason=(reason or None) and reason[:_MAX_TEXT],
            # Effective now: inserted running, its at-once steps follow in this transaction.
            status=JobStatus.SCHEDULED if when > now else JobStatus.RUNNING,
            effective_at=when,
            created_at=now,
            updated_at=now,
            started_at=None if when > now else now,
        )
        if not uow.offboarding.add_job(job):  # a concurrent trigger made it first: that one
            found = (
                uow.offboarding.by_source(trigger, source_ref) if source_ref is not None else None
            ) or uow.offboarding.open_for_user(user_id)
            if found is None:
                raise Conflict("a concurrent offboarding of this user ended; retry")
            return found
        uow.audit.record(
            actor,
            "offboarding.requested",
            user_id,
            "ok",
            {
                "job_id": job.id,
                "trigger": trigger,
                "source_ref": source_ref,
                "effective_at": when.isoformat(),
                "scheduled": when > now,
            },
            at=now,
        )
        if when > now:
            return job
        return self._run_at_once(uow, job, now)

    def _bring_forward(
        self,
        uow: UnitOfWork,
        job: OffboardingJob,
        effective_at: datetime | None,
        now: datetime,
        trigger: str,
        actor: str,
    ) -> OffboardingJob:
        """A new trigger for a user with an open job: the same job; a scheduled one fires
        now (or earlier) when the new trigger is effective sooner."""
        if job.status is not JobStatus.SCHEDULED:
            return job
        when = now if effective_at is None or effective_at <= now else effective_at
        if when >= job.effective_at:
            return job
        locked = uow.offboarding.get(job.id, lock=True)
        if locked is None or locked.status is not JobStatus.SCHEDULED:
            return locked or job
        uow.offboarding.update_job(
            job.id, expected=JobStatus.SCHEDULED, status=JobStatus.SCHEDULED, at=now,
            effective_at=when,
        )  # fmt: skip
        uow.audit.record(
            actor,
            "offboarding.brought_forward",
            job.user_id,
            "ok",
            {"job_id": job.id, "trigger": trigger, "effective_at": when.isoformat()},
            at=now,
        )
        moved = uow.offboarding.get(job.id)
        assert moved is not None
        return self._start(uow, moved, now) if when <= now else moved

    # --- the at-once steps ------------------------------------------------------------------

    def _start(self, uow: UnitOfWork, job: OffboardingJob, now: datetime) -> OffboardingJob:
        """Fire a scheduled job (the caller holds it): claimed (scheduled -> running, with the
        user's groups of today), then its at-once steps, in one transaction."""
        user = uow.directory_users.get(job.user_id)
        groups = job.groups
        username = job.username
        if user is not None:  # a scheduled job fires with the user's groups of today
            groups = tuple(sorted(effective_group_names(uow, job.user_id)))
            username = username or user.username
        if not uow.offboarding.update_job(
            job.id,
            expected=JobStatus.SCHEDULED,
            status=JobStatus.RUNNING,
            at=now,
            groups=groups,
            username=username,
        ):
            current = uow.offboarding.get(job.id)
            assert current is not None
            return current
        return self._run_at_once(
            uow,
            replace(
                job, status=JobStatus.RUNNING, groups=groups, username=username, updated_at=now
            ),
            now,
        )

    def _run_at_once(self, uow: UnitOfWork, job: OffboardingJob, now: datetime) -> OffboardingJob:
        """The at-once steps of a running job: one command (or wipe request) per device,
        then block, revoke, event (the caller's transaction). Returns ``job``."""
        groups = job.groups
        username = job.username
        actor = job.actor_name
        # The devices first, then the block and the revocation: all of it commits together,
        # but the block and the revocation bump the read model's shared ``directory`` and
        # ``tokens`` version rows, whose row locks every concurrent offboarding waits for;
        # taken last, they are held for the commit only, not for the per-device work.
        policies = self.policies()
        for device in uow.devices.list_for_user(job.user_id):
            if device.status in _GONE:
                continue
            self._device_step(uow, job, device, frozenset(groups), policies, now)
        uow.offboarding.block(UserBlock(job.user_id, job.id, job.reason or job.trigger, now))
        revoked = end_user_access(uow, job.user_id, reason="user_offboarded", at=now, actor=actor)
        uow.outbox.add(
            [
                DomainEvent(
                    type=EventType.USER_OFFBOARDED,
                    subject=job.user_id,
                    payload={
                        "user_id": job.user_id,
                        "username": username,
                        "job_id": job.id,
                        "trigger": job.trigger,
                        "source": job.trigger,
                        "reason": job.reason or "offboarded",
                    },
                    occurred_at=now,
                )
            ]
        )
        uow.audit.record(
            actor,
            "offboarding.started",
            job.user_id,
            "ok",
            {
                "job_id": job.id,
                "trigger": job.trigger,
                "logins_blocked": True,
                "enrollment_disabled": True,
                "credentials_revoked": revoked,
            },
            at=now,
        )
        return job

    def _device_step(
        self,
        uow: UnitOfWork,
        job: OffboardingJob,
        device: DeviceRecord,
        groups: frozenset[str],
        policies: CompiledPolicySet,
        now: datetime,
    ) -> None:
        actor = job.actor_name
        key = f"offboarding:{job.id}:{device.id}"
        why = f"offboarding {job.id}" + (f": {job.reason}" if job.reason else "")
        action = Action(offboarding_action(policies, groups=groups, ownership=device.ownership))
        if device.ownership is Ownership.BYOD:
            action = Action.SELECTIVE_WIPE  # whatever a policy says: never more than this
        command_id: str | None = None
        lock_id: str | None = None
        request_id: str | None = None
        state = DeviceState.PENDING
        detail: str | None = None
        if action is Action.SELECTIVE_WIPE:
            payload = self.selective_payload(uow, device.id, why[:_MAX_TEXT])
            command_id = self.commands.enqueue(
                device.id, CommandType.SELECTIVE_WIPE.value, payload, created_by=actor,
                idempotency_key=key, now=now, uow=uow,
            ).id  # fmt: skip
        elif action is Action.FULL_WIPE:
            try:
                request = self.wipes.request_full_wipe(
                    device.id,
                    requested_by=actor,
                    reason=why[:_MAX_TEXT],
                    groups=groups,  # the job's snapshot: the directory may have deleted them
                    uow=uow,
                    now=now,
                )
            except Conflict as refused:  # e.g. not corporate after all: lock and retire
                action, detail = Action.LOCK_AND_RETIRE, f"full wipe refused: {refused.reason}"
            else:
                request_id = request.id
                if request.status == "queued" and request.command_id:
                    command_id = request.command_id
                elif request.status == "pending_approval":
                    state = DeviceState.AWAITING_APPROVAL
                    detail = "full wipe waits for a second admin's approval; locked meanwhile"
                    lock_id = self._lock(uow, device.id, actor, key, now)
                else:
                    action = Action.LOCK_AND_RETIRE
                    detail = f"full wipe request {request.status}"
        if action is Action.LOCK_AND_RETIRE:
            command_id = self._lock(uow, device.id, actor, key, now)
        self._cancel_installs(uow, device.id, actor, now)
        row = JobDevice(
            job_id=job.id,
            device_id=device.id,
            ownership=device.ownership.value,
            action=action,
            state=state,
            updated_at=now,
            command_id=command_id,
            lock_command_id=lock_id,
            wipe_request_id=request_id,
            detail=detail,
        )
        uow.offboarding.add_device(row)
        uow.audit.record(
            actor,
            "offboarding.device_queued",
            device.id,
            "ok",
            {
                "job_id": job.id,
                "user_id": job.user_id,
                "ownership": device.ownership.value,
                "action": action.value,
                "state": state.value,
                "command_id": command_id,
                "lock_command_id": lock_id,
                "wipe_request_id": request_id,
                "detail": detail,
            },
            at=now,
        )

    def _managed_data(
        self, uow: UnitOfWork, device_id: str, reason: str | None
    ) -> Mapping[str, Any]:
        return selective_wipe_payload(uow, device_id, reason=reason, policies=self.policies())

    def _cancel_installs(self, uow: UnitOfWork, device_id: str, actor: str, now: datetime) -> None:
        """Cancel what the MDM still meant to put on the device: an install delivered after
        the wipe (a lower priority, the same check-in's batch) would put managed data back."""
        for command in uow.commands.of_types(device_id, _INSTALLS, limit=500):
            if command.status in DELIVERABLE_STATUSES:
                self.commands.cancel(command.id, by=actor, reason="offboarding", now=now, uow=uow)

    def _lock(self, uow: UnitOfWork, device_id: str, actor: str, key: str, now: datetime) -> str:
        return self.commands.enqueue(
            device_id, CommandType.LOCK.value, {"message": LOCK_MESSAGE}, created_by=actor,
            idempotency_key=key, now=now, uow=uow,
        ).id  # fmt: skip

    # --- cancel, reinstate ------------------------------------------------------------------

    def cancel(
        self, job_id: str, *, actor: str, reason: str, uow: UnitOfWork | None = None
    ) -> OffboardingJob:
        """Cancel a scheduled job; one that started (or ended) is :class:`OffboardingStarted`,
        an unknown id :class:`JobNotFound`. With ``uow`` the cancellation joins the caller's
        unit of work (an HR delivery that clears a termination date commits with it)."""
        if uow is not None:
            return self._cancel(uow, job_id, actor=actor, reason=reason, now=self.clock())
        with self.storage.unit_of_work() as own:
            return self._cancel(own, job_id, actor=actor, reason=reason, now=self.clock())

    def _cancel(
        self, uow: UnitOfWork, job_id: str, *, actor: str, reason: str, now: datetime
    ) -> OffboardingJob:
        job = uow.offboarding.get(job_id, lock=True)
        if job is None:
            raise JobNotFound(f"unknown offboarding job {job_id}")
        if job.status is not JobStatus.SCHEDULED or not uow.offboarding.update_job(
            job_id, expected=JobStatus.SCHEDULED, status=JobStatus.CANCELLED, at=now
        ):
            uow.call_after(lambda: self._audit_refused(actor, job, "cancel", now))
            raise OffboardingStarted(
                f"offboarding job {job_id} is {job.status.value}: only a scheduled job "
                "can be cancelled"
            )
        uow.audit.record(
            actor,
            "offboarding.cancelled",
            job.user_id,
            "ok",
            {"job_id": job_id, "reason": reason[:_MAX_TEXT]},
            at=now,
        )
        cancelled = uow.offboarding.get(job_id)
        assert cancelled is not None
        return cancelled

    def reinstate(self, user_id: str, *, actor: str, reason: str) -> bool:
        """Lift the user's login and enrollment block and end their open job, in one unit of
        work: a scheduled job is cancelled; a running one is halted (:meth:`_halt`: every
        command it queued that the device has not acknowledged is cancelled, a full wipe
        still waiting for approval is withdrawn, no device is retired or marked wiped after
        this). :class:`NotBlocked` when the user is neither blocked nor has an open job."""
        check_user_id(user_id)
        now = self.clock()
        with self.storage.unit_of_work() as uow:
            lifted = uow.offboarding.unblock(user_id)
            found = uow.offboarding.open_for_user(user_id)
            job = uow.offboarding.get(found.id, lock=True) if found is not None else None
            cancelled = None
            halted: dict[str, str] = {}
            if job is not None and job.status in OPEN_STATUSES:  # re-read under the lock
                if job.status is JobStatus.RUNNING:
                    halted = self._halt(uow, job, actor, now)
                uow.offboarding.update_job(
                    job.id, expected=job.status, status=JobStatus.CANCELLED, at=now
                )
                cancelled = job.id
            if not lifted and cancelled is None:
                raise NotBlocked(f"user {user_id} is not offboarded")
            uow.audit.record(
                actor,
                "offboarding.reinstated",
                user_id,
                "ok",
                {
                    "reason": reason[:_MAX_TEXT],
                    "unblocked": lifted,
                    "cancelled_job": cancelled,
                    "devices": halted,
                },
                at=now,
            )
        return True

    def _halt(
        self, uow: UnitOfWork, job: OffboardingJob, actor: str, now: datetime
    ) -> dict[str, str]:
        """Stop a running job's devices that are not final (the caller holds the job): each
        command not yet acknowledged is cancelled, so a later check-in does not wipe or lock
        a device whose user is back; one the device already fetched may have been carried
        out, and the row says so. Returns what happened, by device."""
        out: dict[str, str] = {}
        for row in uow.offboarding.devices(job.id):
            if row.final:
                continue
            notes: list[str] = []
            for command_id in (row.command_id, row.lock_command_id):
                command = uow.commands.get(command_id) if command_id else None
                if command is None:
                    continue
                name, was = command.type.value, command.status
                if was in DELIVERABLE_STATUSES:
                    self.commands.cancel(
                        command.id, by=actor, reason="user reinstated", now=now, uow=uow
                    )
                    fetched = (
                        "" if was is CommandStatus.QUEUED else " (already fetched: it may have run)"
                    )
                    notes.append(f"{name} cancelled{fetched}")
                else:
                    notes.append(f"{name} {was.value}")
            if row.state is DeviceState.AWAITING_APPROVAL and row.wipe_request_id:
                try:
                    self.wipes.cancel(
                        row.wipe_request_id, by=actor, reason="user reinstated", uow=uow, now=now
                    )
                    notes.append("full wipe request withdrawn")
                except (Conflict, NotFound):
                    notes.append("full wipe request already closed")
            detail = ("reinstated: " + ("; ".join(notes) or "nothing queued"))[:_MAX_TEXT]
            self._settle(uow, job, row, DeviceState.CANCELLED, detail, now)
            out[row.device_id] = detail
        return out

    def _audit_refused(self, actor: str, job: OffboardingJob, what: str, now: datetime) -> None:
        with self.storage.unit_of_work() as uow:
            uow.audit.record(
                actor,
                f"offboarding.{what}_refused",
                job.user_id,
                "refused",
                {"job_id": job.id, "status": job.status.value},
                at=now,
            )

    # --- status -----------------------------------------------------------------------------

    def get(self, job_id: str) -> OffboardingJob | None:
        with self.storage.unit_of_work() as uow:
            return uow.offboarding.get(job_id)

    def status(self, user_id: str) -> list[OffboardingReport]:
        """Every job of the user, oldest first, with per device the action, the commands and
        the time of each of their states, and the wipe request's state."""
        check_user_id(user_id)
        out: list[OffboardingReport] = []
        with self.storage.unit_of_work() as uow:
            blocked = is_blocked(uow, user_id)
            for job in uow.offboarding.for_user(user_id):
                devices = []
                for row in uow.offboarding.devices(job.id):
                    ids = [i for i in (row.command_id, row.lock_command_id) if i]
                    devices.append((row, [self._command_report(uow, i) for i in ids]))
                out.append(
                    OffboardingReport(
                        job,
                        tuple(DeviceReport(r, tuple(c for c in cs if c)) for r, cs in devices),
                        blocked and job.status in OPEN_STATUSES | {JobStatus.DONE},
                    )
                )
        # Wipe requests are read through their own service (its own unit of work).
        return [
            OffboardingReport(
                r.job,
                tuple(
                    DeviceReport(d.device, d.commands, self._wipe_status(d.device.wipe_request_id))
                    for d in r.devices
                ),
                r.blocked,
            )
            for r in out
        ]

    @staticmethod
    def _command_report(uow: UnitOfWork, command_id: str) -> CommandReport | None:
        command = uow.commands.get(command_id)
        if command is None:
            return None
        times: dict[str, str] = {}
        for t in uow.commands.transitions(command_id):
            times.setdefault(t.to_status.value, t.at.isoformat())
        return CommandReport(
            command.id, command.type.value, command.status.value, command.error, times
        )

    def _wipe_status(self, request_id: str | None) -> str | None:
        if request_id is None:
            return None
        try:
            return str(self.wipes.get(request_id).status)
        except NotFound:
            return None

    # --- run_due ----------------------------------------------------------------------------

    def holds_lease(self, now: datetime) -> bool:
        with self.storage.unit_of_work() as uow:
            return uow.leases.acquire(LEASE_NAME, self.holder, now=now, ttl=self.lease_ttl)

    def run_due(self, *, now: datetime | None = None, limit: int = 100) -> int:
        """Fire the scheduled jobs that are due and advance the running ones (retire after
        an acknowledged lock or selective wipe, ``wiped`` after a full wipe, a full wipe
        approved meanwhile, done when every device is final). Each step is its own unit of
        work, conditional on the state it found. Returns the number of steps taken; ``0``
        when another process holds the lease."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        now = now or self.clock()
        if not self.holds_lease(now):
            return 0
        tick = _Tick()
        with self.storage.unit_of_work() as uow:
            due = uow.offboarding.due(now, limit)
        for job_id in due:
            with self.storage.unit_of_work() as uow:
                job = uow.offboarding.get(job_id, lock=True)
                if job is None or job.status is not JobStatus.SCHEDULED or job.effective_at > now:
                    continue
                self._start(uow, job, now)
                tick.steps += 1
        with self.storage.unit_of_work() as uow:
            moving = uow.offboarding.advanceable(limit)
        for job_id, device_id in moving:
            if self._advance(job_id, device_id, now):
                tick.steps += 1
        with self.storage.unit_of_work() as uow:
            finishable = uow.offboarding.finishable(limit)
        for job_id in finishable:
            with self.storage.unit_of_work() as uow:
                job = uow.offboarding.get(job_id, lock=True)
                if job is None or job.status is not JobStatus.RUNNING:
                    continue
                if any(not d.final for d in uow.offboarding.devices(job_id)):
                    continue
                uow.offboarding.update_job(
                    job_id, expected=JobStatus.RUNNING, status=JobStatus.DONE, at=now
                )
                states = {d.device_id: d.state.value for d in uow.offboarding.devices(job_id)}
                uow.audit.record(
                    job.actor_name,
                    "offboarding.done",
                    job.user_id,
                    "ok",
                    {"job_id": job_id, "devices": states},
                    at=now,
                )
                tick.steps += 1
        return tick.steps

    def _advance(self, job_id: str, device_id: str, now: datetime) -> bool:
        """One device of a running job, one unit of work: ``True`` when it moved."""
        with self.storage.unit_of_work() as uow:
            job = uow.offboarding.get(job_id, lock=True)
            row = uow.offboarding.device(job_id, device_id)
            if job is None or row is None or job.status is not JobStatus.RUNNING or row.final:
                return False
            device = uow.devices.get(device_id)
            actor = job.actor_name
            if device is None or device.status in _GONE:
                gone = "gone" if device is None else device.status.value
                return self._settle(
                    uow, job, row, DeviceState.SKIPPED, f"device {gone} outside offboarding", now
                )
            if row.state is DeviceState.AWAITING_APPROVAL:
                request = None
                if row.wipe_request_id is not None:
                    try:
                        request = self.wipes.get(row.wipe_request_id, uow=uow)
                    except NotFound:
                        request = None
                return self._approval_moved(uow, job, row, request, now)
            command = uow.commands.get(row.command_id) if row.command_id else None
            if command is None:
                return self._settle(uow, job, row, DeviceState.FAILED, "command missing", now)
            if command.status is CommandStatus.ACKNOWLEDGED:
                if row.action is Action.FULL_WIPE:  # its command is the wipe (wipes.py)
                    uow.certificates.revoke_for_device(device_id, reason="wiped", at=now)
                    change_status(
                        uow, device_id, DeviceStatus.WIPED, reason=f"offboarding {job.id}",
                        at=now, actor=actor,
                    )  # fmt: skip
                    return self._settle(uow, job, row, DeviceState.WIPED, "wipe acknowledged", now)
                self.enrollment.revoke_device(
                    device_id, actor=actor, reason=f"offboarding {job.id}", uow=uow
                )
                return self._settle(
                    uow, job, row, DeviceState.RETIRED, f"{command.type.value} acknowledged", now
                )
            if command.status in (CommandStatus.ERROR, CommandStatus.CANCELLED):
                why = f"{command.type.value} {command.status.value}: {command.error or '-'}"
                return self._settle(uow, job, row, DeviceState.FAILED, why[:_MAX_TEXT], now)
            return False

    def _approval_moved(
        self,
        uow: UnitOfWork,
        job: OffboardingJob,
        row: JobDevice,
        request: WipeRequestView | None,
        now: datetime,
    ) -> bool:
        if request is None or request.status == "pending_approval":
            return False
        if request.status == "queued" and request.command_id:
            moved = uow.offboarding.update_device(
                job.id, row.device_id, expected=DeviceState.AWAITING_APPROVAL,
                state=DeviceState.PENDING, at=now, command_id=request.command_id,
                detail="full wipe approved and queued",
            )  # fmt: skip
            if moved:
                uow.audit.record(
                    job.actor_name,
                    "offboarding.wipe_approved",
                    row.device_id,
                    "ok",
                    {"job_id": job.id, "command_id": request.command_id},
                    at=now,
                )
            return moved
        return self._settle(
            uow, job, row, DeviceState.FAILED, f"full wipe request {request.status}", now
        )

    @staticmethod
    def _settle(
        uow: UnitOfWork,
        job: OffboardingJob,
        row: JobDevice,
        state: DeviceState,
        detail: str,
        now: datetime,
    ) -> bool:
        moved = uow.offboarding.update_device(
            job.id, row.device_id, expected=row.state, state=state, at=now, detail=detail
        )
        if moved:
            uow.audit.record(
                job.actor_name,
                f"offboarding.device_{state.value}",
                row.device_id,
                "ok" if state is not DeviceState.FAILED else "failed",
                {"job_id": job.id, "action": row.action.value, "detail": detail},
                at=now,
            )
        return moved

    # --- the served worker's loop -------------------------------------------------------------

    def start(self, *, interval: timedelta | None = None) -> None:
        """Run :meth:`run_due` every ``interval`` (default: the constructor's) on a daemon
        thread: served workers only (``posture_gateway.offboarding.runner``)."""
        if self._thread is not None:
            return
        if interval is not None:
            if interval <= timedelta(0):
                raise ValueError("the offboarding interval must be positive")
            self.interval = interval
            self.lease_ttl = max(interval * 4, timedelta(minutes=1))
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="offboarding", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop (waits for a step in progress) and release the lease; a service
        that was never started touches nothing."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout=60)
        try:
            with self.storage.unit_of_work() as uow:
                uow.leases.release(LEASE_NAME, self.holder)
        except Exception:  # shutting down: the lease expires by itself
            log.exception("could not release the offboarding lease")

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                # A full page means more is due: go on at once instead of waiting a tick.
                while self.run_due() >= 1 and not self._stop.is_set():
                    pass
            except Exception:  # the next tick retries; each step is its own unit of work
                log.exception("offboarding tick failed")
            self._stop.wait(self.interval.total_seconds())
