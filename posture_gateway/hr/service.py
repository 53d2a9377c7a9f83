"""Accepting one verified HR delivery: each employee event's record and effect in ONE unit
of work.

:meth:`HrTriggerService.accept` takes the events of a delivery whose signature and shape
were checked (the views do that). It reads what was accepted of the delivery before
(``hr_deliveries``): a delivery recorded whole is answered with its stored outcome and
nothing else happens. Every event not yet recorded is then applied in its own transaction:
match the employee to a directory user, ask ``core.offboarding`` to offboard (at once or
scheduled), reschedule or cancel, audit the event, store its record. A failure rolls back
that employee's event only: the others of the delivery still take effect, the answer is 503,
and the sender's retry applies only what is missing (the rest answers from its records). Two
concurrent copies of one delivery: the second insert of an event fails, that transaction
rolls back, and the event answers with the first copy's outcome.

Records older than ``hr.delivery_retention`` (default 90 days, always longer than the replay
window) are purged, at most once a minute per process, after an accepted delivery.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mdm_core.offboarding.model import JobStatus, OffboardingJob
from mdm_core.offboarding.service import OffboardingService
from mdm_core.storage.sql.uow import SqlStorage, SqlUnitOfWork
from posture_gateway.hr.errors import HrError, NotAllApplied
from posture_gateway.hr.events import EventKind, HrEvent
from posture_gateway.hr.matching import match_user
from posture_gateway.hr.metrics import EVENTS, FAILED, PURGED, REPLAYS
from posture_gateway.hr.store import DeliveryExists, DeliveryRecord, HrDeliveryStore

__all__ = ["HrTriggerService", "DeliveryResult", "OUTCOMES", "AUDIT_ACTION", "DEFAULT_RETENTION"]

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
#: How long delivery records are kept (``hr.delivery_retention``).
DEFAULT_RETENTION = timedelta(days=90)
#: At most one purge of old records per this interval, per process.
_PURGE_EVERY = timedelta(minutes=1)


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
        retention: timedelta = DEFAULT_RETENTION,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.storage = storage
        self.offboarding = offboarding
        self.retention = retention
        self.clock = clock
        self._purge_lock = threading.Lock()
        self._purged_at: datetime | None = None

    def accept(
        self, source: str, *, delivery_key: str, body_sha256: str, events: Sequence[HrEvent]
    ) -> DeliveryResult:
        """Record and act on one delivery, or answer a redelivery with its first outcome.

        Raises :class:`HrError` 409 ``event_id_reused`` when ``delivery_key`` was accepted
        with a different body (a generic ``event_id`` used twice). When some events were
        applied and others failed, raises :class:`NotAllApplied` (503; the applied ones
        stay); when none could be, the first failure itself."""
        now = self.clock()
        with self.storage.unit_of_work() as uow:
            earlier = {r.seq: r for r in HrDeliveryStore(uow.conn).get(source, delivery_key)}
        if earlier:
            self._check_body(body_sha256, earlier.values())
            if all(seq in earlier for seq in range(len(events))):
                REPLAYS.labels(source=source).inc()
                return DeliveryResult(source, delivery_key, True, tuple(earlier.values()))
        records: list[DeliveryRecord] = []
        applied = 0
        failures: list[Exception] = []
        for seq, event in enumerate(events):
            if seq in earlier:
                records.append(earlier[seq])
                continue
            try:
                record, new = self._accept_one(source, delivery_key, body_sha256, seq, event, now)
            except HrError:
                raise  # event_id_reused: the delivery, not this event, is wrong
            except Exception as exc:  # this employee's unit rolled back; go on with the others
                log.exception(
                    "hr webhook: event %d of delivery %s/%s not applied", seq, source, delivery_key
                )
                FAILED.labels(source=source).inc()
                failures.append(exc)
                continue
            records.append(record)
            if new:
                applied += 1
                EVENTS.labels(source=source, outcome=record.outcome).inc()
        if failures:
            if not applied and not earlier:
                raise failures[0]
            raise NotAllApplied(len(failures), len(events)) from failures[0]
        self._purge_old(now)
        replayed = applied == 0 and bool(records)  # every event was a concurrent copy's
        if replayed:
            REPLAYS.labels(source=source).inc()
        return DeliveryResult(source, delivery_key, replayed, tuple(records))

    def _accept_one(
        self,
        source: str,
        key: str,
        body_sha256: str,
        seq: int,
        event: HrEvent,
        now: datetime,
    ) -> tuple[DeliveryRecord, bool]:
        """One event's record and effect in one unit of work: ``(record, True)``, or the
        record a concurrent copy of the delivery committed first and ``False``."""
        try:
            with self.storage.unit_of_work() as uow:
                record = self._apply(uow, event, source, key, body_sha256, seq, now)
                HrDeliveryStore(uow.conn).add([record])
            return record, True
        except DeliveryExists:  # a concurrent copy of this delivery committed it first
            with self.storage.unit_of_work() as uow:
                won = {r.seq: r for r in HrDeliveryStore(uow.conn).get(source, key)}
            if seq not in won:  # cannot happen: the insert that beat us committed it
                raise HrError(
                    409, "event_id_reused", "the delivery is being processed; retry"
                ) from None
            self._check_body(body_sha256, won.values())
            return won[seq], False

    @staticmethod
    def _check_body(body_sha256: str, records: Iterable[DeliveryRecord]) -> None:
        if any(r.body_sha256 != body_sha256 for r in records):
            raise HrError(409, "event_id_reused", "this event_id was delivered with another body")

    def _purge_old(self, now: datetime) -> None:
        """Delete records past the retention, at most once per ``_PURGE_EVERY``; a failure is
        logged (the delivery was accepted: its answer must say so)."""
        with self._purge_lock:
            if self._purged_at is not None and now - self._purged_at < _PURGE_EVERY:
                return
            self._purged_at = now
        try:
            with self.storage.unit_of_work() as uow:
                purged = HrDeliveryStore(uow.conn).purge(now - self.retention)
        except Exception:
            log.exception("hr deliveries: purge failed (retried in a minute)")
            return
        if purged:
            PURGED.inc(purged)

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
