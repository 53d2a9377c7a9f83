"""Full wipes: who may erase a device, and the two-person rule.

A full wipe (command type ``wipe``) erases the whole device, so three rules hold here, on
the server, whatever the caller (admin API, CLI, offboarding job):

- only a ``corporate`` device is ever wiped (:class:`FullWipeRefused`; the command service
  refuses a ``wipe`` for any other ownership too, and cancels one at delivery if the device's
  ownership changed since);
- when the offboarding policy that applies to the device's user says ``two_person_rule:
  true`` (:func:`mdm_core.policy.configuration.offboarding_policy_for`), the wipe is queued
  only once two different named admins (``admin:<name>``, :func:`is_human_admin`) signed: the
  requester counts as the first when it is one; automatic callers (``offboarding:<job>``,
  ``hr:*``) never sign;
- this is the only module that enqueues a ``wipe`` (a package-rule test holds the rest of the
  code to it), with the idempotency key ``wipe-request:<id>``, in the same unit of work as the
  approval that completes the request, so two admins approving at once queue one wipe.

Every request, approval, rejection and refusal is audited with its actor (refusals in a unit
of work of their own, since the refused one rolls back). A device has at most one open
request: asking again returns it (audited ``already_open``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from mdm_core.device.command_model import (
    FINAL_STATUSES,
    CommandType,
    FullWipeRefused,
    InactiveDevice,
    NoSuchDevice,
)
from mdm_core.device.commands import CommandService
from mdm_core.device.wipe_model import (
    ApprovalRequired,
    SameApprover,
    WipeRequest,
    WipeRequestClosed,
    WipeRequestNotFound,
    WipeRequestStatus,
    is_human_admin,
)
from mdm_core.domain.errors import BadRequest, MdmError
from mdm_core.domain.model import DeviceRecord, DeviceStatus
from mdm_core.policy.compiled import CompiledPolicySet
from mdm_core.policy.configuration import offboarding_policy_for
from mdm_core.posture.model import Ownership
from mdm_core.storage.uow import Storage, UnitOfWork

__all__ = [
    "FullWipeRefused",
    "ApprovalRequired",
    "SameApprover",
    "WipeRequestNotFound",
    "WipeRequestClosed",
    "WipeRequest",
    "WipeRequestStatus",
    "WipeService",
    "is_human_admin",
    "idempotency_key",
]

_T = TypeVar("_T")
MAX_REASON = 500
MAX_ACTOR = 128
_INACTIVE = frozenset({DeviceStatus.RETIRED, DeviceStatus.WIPED})


def idempotency_key(request_id: str) -> str:
    """The ``wipe`` command's idempotency key for a request: one request, one wipe."""
    return f"wipe-request:{request_id}"


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def _actor(value: str, what: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ACTOR:
        raise BadRequest(f"{what} must be 1 to {MAX_ACTOR} characters")
    return value


def _text(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_REASON:
        raise BadRequest(f"{what} must be 1 to {MAX_REASON} characters")
    return value.strip()


class WipeService:
    """Full-wipe requests, approvals and rejections (see the module docstring). Each call is
    one unit of work, or joins the caller's ``uow``."""

    def __init__(
        self,
        storage: Storage,
        policies: Callable[[], CompiledPolicySet],
        *,
        kick: Callable[[], None] | None = None,
    ) -> None:
        if storage is None or policies is None:
            raise ValueError("WipeService needs storage and the policy set")
        self.storage = storage
        self._policies = policies
        self._commands = CommandService(storage, kick=kick)

    # --- requests -------------------------------------------------------------------------

    def request_full_wipe(
        self,
        device_id: str,
        *,
        requested_by: str,
        reason: str,
        groups: frozenset[str] | None = None,
        uow: UnitOfWork | None = None,
        now: datetime | None = None,
    ) -> WipeRequest:
        """Ask for a full wipe of ``device_id``. Unknown device: :class:`NoSuchDevice`;
        retired or wiped: :class:`InactiveDevice`; not corporate: :class:`FullWipeRefused`.
        Without the two-person rule the ``wipe`` is queued at once (status ``queued``);
        with it, a ``pending_approval`` request is stored. An open request of the device is
        returned as is. ``groups`` are the user's group names the offboarding policy is
        chosen by when the caller holds a snapshot (an offboarding job whose user the
        directory already deleted); by default the user's current groups."""
        actor = _actor(requested_by, "requested_by")
        why = _text(reason, "reason")
        at = _now(now)

        def run(u: UnitOfWork) -> WipeRequest:
            device = self._wipeable(u, device_id, actor, "wipe.request", at)
            existing = u.wipe_requests.open_for_device(device_id)
            if existing is not None:
                if not self._finished(u, existing):
                    self._already_open(u, actor, existing, why, at)
                    return existing
                self._close_finished(u, existing, at)
            required = self._two_person_rule(u, device, groups)
            signed = (actor,) if is_human_admin(actor) else ()
            request = WipeRequest(
                id=str(uuid.uuid4()),
                device_id=device_id,
                user_id=device.user_id,
                status=WipeRequestStatus.PENDING_APPROVAL,
                requested_by=actor,
                reason=why,
                approvals=signed,
                command_id=None,
                created_at=at,
                updated_at=at,
            )
            stored, created = u.wipe_requests.create(request)
            if not created:  # a concurrent request for the device won
                self._already_open(u, actor, stored, why, at)
                return stored
            u.audit.record(
                actor,
                "wipe.requested",
                device_id,
                "ok",
                {
                    "request_id": request.id,
                    "reason": why,
                    "two_person_rule": required,
                    "user_id": device.user_id,
                },
                at=at,
            )
            if required and len(signed) < 2:
                return stored
            return self._queue(u, stored, actor, at)

        return self._run(run, uow)

    def approve(
        self,
        request_id: str,
        *,
        approver: str,
        uow: UnitOfWork | None = None,
        now: datetime | None = None,
    ) -> WipeRequest:
        """Sign a ``pending_approval`` request. The approver must be a named admin
        (:class:`ApprovalRequired` otherwise) who has not signed it yet
        (:class:`SameApprover`); once two different admins signed, the ``wipe`` is queued in
        this unit of work. Unknown id: :class:`WipeRequestNotFound`; not pending:
        :class:`WipeRequestClosed`. The device is checked again (it may have been retired,
        or re-enrolled as BYOD, since the request)."""
        actor = _actor(approver, "approver")
        at = _now(now)

        def run(u: UnitOfWork) -> WipeRequest:
            request = self._pending(u, request_id, actor, "wipe.approve", at)
            if not is_human_admin(actor):
                self._refuse(
                    u,
                    actor,
                    "wipe.approve",
                    request.device_id,
                    ApprovalRequired.reason,
                    at,
                    request_id=request.id,
                )
                raise ApprovalRequired("only a named admin (admin:<name>) can approve a wipe")
            if actor in request.approvals:
                self._refuse(
                    u,
                    actor,
                    "wipe.approve",
                    request.device_id,
                    SameApprover.reason,
                    at,
                    request_id=request.id,
                    signed=list(request.approvals),
                )
                raise SameApprover(
                    f"{actor} already signed this request: a second, different admin must "
                    "approve it"
                )
            self._wipeable(u, request.device_id, actor, "wipe.approve", at)
            approvals = (*request.approvals, actor)
            signed = u.wipe_requests.update(
                request.id,
                status=WipeRequestStatus.PENDING_APPROVAL,
                approvals=approvals,
                command_id=None,
                at=at,
                still_open=True,
            )
            u.audit.record(
                actor,
                "wipe.approved",
                request.device_id,
                "ok",
                {"request_id": request.id, "approvals": list(approvals)},
                at=at,
            )
            if len(approvals) < 2:
                return signed
            return self._queue(u, signed, actor, at)

        return self._run(run, uow)

    def reject(
        self,
        request_id: str,
        *,
        by: str,
        reason: str,
        uow: UnitOfWork | None = None,
        now: datetime | None = None,
    ) -> WipeRequest:
        """Reject a ``pending_approval`` request (nothing is queued; the device is free for
        a new request). Any actor may say no. Unknown id: :class:`WipeRequestNotFound`; not
        pending: :class:`WipeRequestClosed`."""
        return self._close(request_id, by, reason, WipeRequestStatus.REJECTED, uow, now)

    def cancel(
        self,
        request_id: str,
        *,
        by: str,
        reason: str,
        uow: UnitOfWork | None = None,
        now: datetime | None = None,
    ) -> WipeRequest:
        """Withdraw a ``pending_approval`` request (e.g. an offboarding cancelled before it
        fired); as :meth:`reject`, with status ``cancelled``. A queued wipe is cancelled as a
        command (:meth:`mdm_core.device.commands.CommandService.cancel`)."""
        return self._close(request_id, by, reason, WipeRequestStatus.CANCELLED, uow, now)

    def get(self, request_id: str, *, uow: UnitOfWork | None = None) -> WipeRequest:
        """The request; :class:`WipeRequestNotFound` for an unknown id."""

        def run(u: UnitOfWork) -> WipeRequest:
            found = u.wipe_requests.get(request_id)
            if found is None:
                raise WipeRequestNotFound(f"no wipe request {request_id!r}")
            return found

        return self._run(run, uow)

    def list(
        self,
        device_id: str | None = None,
        status: str | None = None,
        *,
        limit: int = 100,
        uow: UnitOfWork | None = None,
    ) -> list[WipeRequest]:
        """Requests, newest first, by device and/or status (``BadRequest`` for a status that
        does not exist)."""
        try:
            wanted = None if status is None else WipeRequestStatus(status)
        except ValueError:
            raise BadRequest(
                f"status must be one of {', '.join(s.value for s in WipeRequestStatus)}"
            ) from None

        def run(u: UnitOfWork) -> list[WipeRequest]:
            return u.wipe_requests.list(device_id=device_id, status=wanted, limit=limit)

        return self._run(run, uow)

    # --- steps ----------------------------------------------------------------------------

    def _queue(self, u: UnitOfWork, request: WipeRequest, actor: str, at: datetime) -> WipeRequest:
        command = self._commands.enqueue(
            request.device_id,
            CommandType.WIPE.value,
            {},
            created_by=actor,
            idempotency_key=idempotency_key(request.id),
            now=at,
            uow=u,
        )
        queued = u.wipe_requests.update(
            request.id,
            status=WipeRequestStatus.QUEUED,
            approvals=request.approvals,
            command_id=command.id,
            at=at,
            still_open=True,
        )
        u.audit.record(
            actor,
            "wipe.queued",
            request.device_id,
            "ok",
            {
                "request_id": request.id,
                "command_id": command.id,
                "approvals": list(request.approvals),
            },
            at=at,
        )
        return queued

    def _close(
        self,
        request_id: str,
        by: str,
        reason: str,
        status: WipeRequestStatus,
        uow: UnitOfWork | None,
        now: datetime | None,
    ) -> WipeRequest:
        actor = _actor(by, "by")
        why = _text(reason, "reason")
        at = _now(now)
        action = "wipe.reject" if status is WipeRequestStatus.REJECTED else "wipe.cancel"

        def run(u: UnitOfWork) -> WipeRequest:
            request = self._pending(u, request_id, actor, action, at)
            closed = u.wipe_requests.update(
                request.id,
                status=status,
                approvals=request.approvals,
                command_id=None,
                at=at,
                still_open=False,
                closed_by=actor,
                close_reason=why,
            )
            u.audit.record(
                actor,
                f"wipe.{status.value}",
                request.device_id,
                "ok",
                {"request_id": request.id, "reason": why},
                at=at,
            )
            return closed

        return self._run(run, uow)

    def _pending(
        self, u: UnitOfWork, request_id: str, actor: str, action: str, at: datetime
    ) -> WipeRequest:
        request = u.wipe_requests.get(request_id, lock=True)
        if request is None:
            self._refuse(u, actor, action, request_id, WipeRequestNotFound.reason, at)
            raise WipeRequestNotFound(f"no wipe request {request_id!r}")
        if request.status is not WipeRequestStatus.PENDING_APPROVAL:
            self._refuse(
                u,
                actor,
                action,
                request.device_id,
                WipeRequestClosed.reason,
                at,
                request_id=request.id,
                status=request.status.value,
            )
            raise WipeRequestClosed(
                f"wipe request {request.id} is {request.status.value}, not pending_approval"
            )
        return request

    def _wipeable(
        self, u: UnitOfWork, device_id: str, actor: str, action: str, at: datetime
    ) -> DeviceRecord:
        """The device, if a full wipe of it is allowed; else audited and raised."""
        device = u.devices.get(device_id)
        error: MdmError | None = None
        if device is None:
            error = NoSuchDevice(f"unknown device {device_id!r}")
        elif device.status in _INACTIVE:
            error = InactiveDevice(f"device {device_id} is {device.status.value}")
        elif device.ownership is not Ownership.CORPORATE:
            error = FullWipeRefused(
                f"device {device_id} is {device.ownership.value}: a full wipe is only possible "
                "on a corporate device (use selective_wipe)"
            )
        if error is None and device is not None:
            return device
        assert error is not None
        self._refuse(u, actor, action, device_id, error.reason, at)
        raise error

    def _two_person_rule(
        self, u: UnitOfWork, device: DeviceRecord, groups: frozenset[str] | None
    ) -> bool:
        if groups is None:
            groups = u.memberships.effective_group_names(device.user_id)
        policy = offboarding_policy_for(self._policies(), groups=groups, ownership=device.ownership)
        return policy is not None and policy.two_person_rule

    @staticmethod
    def _already_open(
        u: UnitOfWork, actor: str, request: WipeRequest, reason: str, at: datetime
    ) -> None:
        """Audit a request answered with the device's open one (nothing new is queued)."""
        u.audit.record(
            actor,
            "wipe.requested",
            request.device_id,
            "already_open",
            {"request_id": request.id, "status": request.status.value, "reason": reason},
            at=at,
        )

    @staticmethod
    def _finished(u: UnitOfWork, request: WipeRequest) -> bool:
        """Whether an open request is over: queued, and its command ended (or is gone)."""
        if request.status is not WipeRequestStatus.QUEUED or request.command_id is None:
            return False
        command = u.commands.get(request.command_id)
        return command is None or command.status in FINAL_STATUSES

    @staticmethod
    def _close_finished(u: UnitOfWork, request: WipeRequest, at: datetime) -> None:
        u.wipe_requests.update(
            request.id,
            status=request.status,
            approvals=request.approvals,
            command_id=request.command_id,
            at=at,
            still_open=False,
        )

    def _refuse(
        self,
        u: UnitOfWork,
        actor: str,
        action: str,
        subject: str,
        reason: str,
        at: datetime,
        **detail: Any,
    ) -> None:
        """Audit a refusal after this unit of work (which rolls back) has ended."""

        def record() -> None:
            with self.storage.unit_of_work() as own:
                own.audit.record(
                    actor, action, subject, "refused", {"reason": reason, **detail}, at=at
                )

        u.call_after(record)

    def _run(self, fn: Callable[[UnitOfWork], _T], uow: UnitOfWork | None) -> _T:
        if uow is not None:
            return fn(uow)
        with self.storage.unit_of_work() as u:
            return fn(u)
