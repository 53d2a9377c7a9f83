"""Accepting one verified HR delivery: its record and its effect in ONE unit of work.

:meth:`HrTriggerService.accept` takes the events of a delivery whose signature and shape
were checked (the views do that) and, in one transaction: finds whether the delivery was
accepted before (``hr_deliveries``; then the stored outcome is the answer and nothing else
happens), matches each employee to a directory user, asks ``core.offboarding`` to offboard
(at once or scheduled), reschedule or cancel, audits each event, and stores the delivery's
records. A failure anywhere rolls all of it back: the sender's retry finds nothing half done.
Two concurrent copies of one delivery: the second insert fails, its transaction rolls back,
and it answers with the first one's outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mdm_core.offboarding.model import JobStatus, OffboardingJob
from mdm_core.offboarding.service import OffboardingService
from mdm_core.storage.sql.uow import SqlStorage, SqlUnitOfWork
from posture_gateway.hr.errors import HrError
from posture_gateway.hr.events import EventKind, HrEvent
from posture_gateway.hr.matching import match_user
from posture_gateway.hr.metrics import EVENTS, REPLAYS
from posture_gateway.hr.store import DeliveryExists, DeliveryRecord, HrDeliveryStore

__all__ = ["HrTriggerService", "DeliveryResult", "OUTCOMES", "AUDIT_ACTION"]

log = logging.getLogger(__name__)

#: What an employee event did (the ``outcome`` of its record, audit entry and metric).
OUTCOMES = (
    "offboarding_started",
    "offboarding_scheduled",
    "offboarding_rescheduled",
    "offboarding_cancelled",
    "already_offboarding",
    "nothing_to_cancel",
    "unmatched",
    "ambiguous",
    "ignored",
    "invalid",
)
AUDIT_ACTION = "hr.employee_event"


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    source: str
    delivery_key: str
    replayed: bool
    records: tuple[DeliveryRecord, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "delivery_key": self.delivery_key,
            "replayed": self.replayed,
            "events": [r.to_json() for r in self.records],
        }


class HrTriggerService:
    def __init__(
        self,
        storage: SqlStorage,
        offboarding: OffboardingService,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.storage = storage
        self.offboarding = offboarding
        self.clock = clock

    def accept(
        self, source: str, *, delivery_key: str, body_sha256: str, events: Sequence[HrEvent]
    ) -> DeliveryResult:
        """Record and act on one delivery, or answer a redelivery with its first outcome.

        Raises :class:`HrError` 409 ``event_id_reused`` when ``delivery_key`` was accepted
        with a different body (a generic ``event_id`` used twice)."""
        now = self.clock()
        try:
            with self.storage.unit_of_work() as uow:
                store = HrDeliveryStore(uow.conn)
                earlier = store.get(source, delivery_key)
                if earlier:
                    return self._replayed(source, delivery_key, body_sha256, earlier)
                records = tuple(
                    self._apply(uow, event, source, delivery_key, body_sha256, seq, now)
                    for seq, event in enumerate(events)
                )
                store.add(records)
        except DeliveryExists:  # a concurrent copy of this delivery committed first
            with self.storage.unit_of_work() as uow:
                earlier = HrDeliveryStore(uow.conn).get(source, delivery_key)
            return self._replayed(source, delivery_key, body_sha256, earlier)
        for record in records:
            EVENTS.labels(source=source, outcome=record.outcome).inc()
        return DeliveryResult(source, delivery_key, False, records)

    def list(
        self,
        *,
        outcome: str | None = None,
        source: str | None = None,
        user_id: str | None = None,
        limit: int = 100,
    ) -> list[DeliveryRecord]:
        with self.storage.unit_of_work() as uow:
            return HrDeliveryStore(uow.conn).list(
                outcome=outcome, source=source, user_id=user_id, limit=limit
            )

    # ---- one delivery ---------------------------------------------------------------------

    def _replayed(
        self, source: str, key: str, body_sha256: str, earlier: Sequence[DeliveryRecord]
    ) -> DeliveryResult:
        if not earlier:  # cannot happen: the insert that beat us committed these rows
            raise HrError(409, "event_id_reused", "the delivery is being processed; retry")
        if earlier[0].body_sha256 != body_sha256:
            raise HrError(409, "event_id_reused", "this event_id was delivered with another body")
        REPLAYS.labels(source=source).inc()
        return DeliveryResult(source, key, True, tuple(earlier))

    def _apply(
        self,
        uow: SqlUnitOfWork,
        event: HrEvent,
        source: str,
        key: str,
        body_sha256: str,
        seq: int,
        now: datetime,
    ) -> DeliveryRecord:
        detail: dict[str, Any] = {"reason": event.reason}
        user_id: str | None = None
        job: OffboardingJob | None = None
        if event.kind is EventKind.IGNORE:
            outcome = "ignored"
        elif event.kind is EventKind.INVALID:
            outcome = "invalid"
        else:
            match = match_user(uow, event)
            if match.user is None:
                assert match.outcome is not None
                outcome = match.outcome
                detail.update(
                    match_attribute=event.match_attribute,
                    match_value=event.match_value,
                    candidates=match.candidates,
                )
            elif event.kind is EventKind.OFFBOARD:
                user_id = match.user.id
                outcome, job = self._offboard(uow, event, match.user.id, match.user.username, now)
            else:
                user_id = match.user.id
                outcome, job = self._cancel(uow, event, match.user.id, now)
        record = DeliveryRecord(
            source=source,
            delivery_key=key,
            seq=seq,
            body_sha256=body_sha256,
            employee_ref=event.employee_ref,
            event=event.kind.value,
            outcome=outcome,
            received_at=now,
            user_id=user_id,
            job_id=job.id if job is not None else None,
            source_ref=job.source_ref if job is not None else event.source_ref,
            effective_at=job.effective_at if job is not None else event.effective_at,
            detail=detail,
        )
        uow.audit.record(
            event.trigger,
            AUDIT_ACTION,
            user_id or f"hr-employee:{source}:{event.employee_ref}",
            outcome,
            {
                "delivery_key": key,
                "seq": seq,
                "employee_ref": event.employee_ref,
                "event": event.kind.value,
                "job_id": record.job_id,
                "source_ref": record.source_ref,
                "effective_at": record.effective_at.isoformat() if record.effective_at else None,
                **detail,
            },
            at=now,
        )
        return record

    def _cancel_scheduled(
        self, uow: SqlUnitOfWork, job: OffboardingJob, actor: str, reason: str, now: datetime
    ) -> bool:
        """Cancel a scheduled job inside THIS unit of work: the cancellation commits with the
        delivery record or not at all. ``False`` when it is no longer scheduled."""
        locked = uow.offboarding.get(job.id, lock=True)
        if locked is None or locked.status is not JobStatus.SCHEDULED:
            return False
        self.offboarding.cancel(job.id, actor=actor, reason=reason, uow=uow)
        return True

    @staticmethod
    def _fresh_ref(
        uow: SqlUnitOfWork, trigger: str, source_ref: str
    ) -> tuple[str, OffboardingJob | None]:
        """``source_ref`` and the job it made, or ``<source_ref>:r<n>`` past the jobs it made
        that were cancelled since (a termination date set, cleared, then set again schedules
        again), stable for every later delivery of the same fact."""
        ref, n = source_ref, 1
        while (made := uow.offboarding.by_source(trigger, ref)) is not None:
            if made.status is not JobStatus.CANCELLED:
                return ref, made
            n += 1
            ref = f"{source_ref}:r{n}"
        return ref, None

    def _offboard(
        self, uow: SqlUnitOfWork, event: HrEvent, user_id: str, username: str, now: datetime
    ) -> tuple[str, OffboardingJob]:
        assert event.source_ref is not None
        moved = False
        open_job = uow.offboarding.open_for_user(user_id)
        if (
            open_job is not None
            and open_job.status is JobStatus.SCHEDULED
            and open_job.trigger == event.trigger
            and not (open_job.source_ref or "").startswith(event.source_ref)
        ):  # the termination date moved: the old schedule goes first
            moved = self._cancel_scheduled(
                uow, open_job, event.trigger, f"rescheduled by {event.source_ref}", now
            )
        ref, made = self._fresh_ref(uow, event.trigger, event.source_ref)
        if made is not None:  # an earlier delivery of the same fact made it
            return "already_offboarding", made
        job = self.offboarding.request(
            uow,
            user_id=user_id,
            trigger=event.trigger,
            source_ref=ref,
            effective_at=event.effective_at,
            actor=event.trigger,
            username=username,
            reason=event.reason,
        )
        if job.source_ref != ref or job.trigger != event.trigger:
            return "already_offboarding", job  # the user's open job, from another trigger
        if job.status is JobStatus.SCHEDULED:
            return ("offboarding_rescheduled" if moved else "offboarding_scheduled"), job
        return "offboarding_started", job

    def _cancel(
        self, uow: SqlUnitOfWork, event: HrEvent, user_id: str, now: datetime
    ) -> tuple[str, OffboardingJob | None]:
        job = uow.offboarding.open_for_user(user_id)
        if (
            job is not None
            and job.status is JobStatus.SCHEDULED
            and job.trigger == event.trigger
            and self._cancel_scheduled(uow, job, event.trigger, event.reason, now)
        ):
            return "offboarding_cancelled", job
        return "nothing_to_cancel", None
