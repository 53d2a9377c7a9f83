"""Check-ins: a device's signed posture report in, its waiting commands out.

:meth:`CheckinService.check_in` runs, for an authenticated device, in ONE unit of work:

1. normalise the platform-native report (:mod:`mdm_core.posture.normalize`), reading only the
   fields the device's privacy profile allows, then drop anything else again
   (:meth:`mdm_core.domain.privacy.PrivacyProfile.apply`) — nothing else is ever stored;
2. store it as the latest posture and in the bounded history, and set
   ``devices.last_checkin_at`` (one SQL round trip on PostgreSQL); a device reporting through
   two channels (MDM + companion app) gets the reports merged
   (:mod:`mdm_core.posture.merge`);
3. run the compliance hook (the policy engine) on the new and previous posture;
4. write ``posture.reported`` and, when a security-relevant field changed,
   ``posture.changed`` to the outbox;
5. pick the commands to deliver (new, unanswered, NotNow-deferred; by priority) and mark them
   delivered, with their transitions and events.

Bad input (unknown format, wrong types) raises before anything is written. After the unit of
work commits the outbox relay is kicked, so events reach the bus at once.

Step 1 is also how a signed posture snapshot in a login proof is read: the snapshot has the
shape of a check-in body (:func:`report_envelope`) and goes through
:meth:`CheckinService.posture_of`, the one place where a report's format is handled and the
privacy profile is applied.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mdm_core.bus.events import DomainEvent, EventType
from mdm_core.device.commands import Command, CommandService
from mdm_core.device.compliance_hook import UNKNOWN_COMPLIANCE, ComplianceHook, ComplianceSummary
from mdm_core.device.proof import AuthenticatedDevice
from mdm_core.domain.errors import BadRequest
from mdm_core.domain.model import DeviceRecord
from mdm_core.domain.privacy import PrivacyProfile, PrivacyProfiles
from mdm_core.posture.merge import DEFAULT_SOURCE_MAX_AGE, merge_reports
from mdm_core.posture.model import SECURITY_FIELDS, Posture
from mdm_core.posture.normalize import normalize
from mdm_core.storage.uow import Storage, UnitOfWork

__all__ = [
    "SECURITY_FIELDS",
    "CheckinResult",
    "CheckinService",
    "report_envelope",
    "security_changes",
]


def report_envelope(data: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """``(format, report)`` of a check-in body or login snapshot
    ``{"format": "<fmt>", "report": {...}}``; :class:`BadRequest` for anything else."""
    if not isinstance(data, Mapping):
        raise BadRequest("expected an object {format, report}")
    fmt, report = data.get("format"), data.get("report")
    if not isinstance(fmt, str):
        raise BadRequest("format must be a string")
    if not isinstance(report, Mapping):
        raise BadRequest("report must be a JSON object")
    return fmt, report


def security_changes(previous: Posture | None, current: Posture) -> dict[str, dict[str, Any]]:
    """``{field: {"old": ..., "new": ...}}`` for each security field that differs (JSON values);
    against no previous posture, every field the current one established."""
    new = current.model_dump(mode="json", include=set(SECURITY_FIELDS))
    old: dict[str, Any] = (
        {} if previous is None else previous.model_dump(mode="json", include=set(SECURITY_FIELDS))
    )
    changes: dict[str, dict[str, Any]] = {}
    for name in sorted(SECURITY_FIELDS):
        before, after = old.get(name), new.get(name)
        if before == after or (previous is None and after in (None, [])):
            continue
        changes[name] = {"old": before, "new": after}
    return changes


@dataclass(frozen=True, slots=True)
class CheckinResult:
    device_id: str
    seq: int
    posture: Posture
    changes: dict[str, dict[str, Any]]
    commands: list[Command]
    collect: list[str]
    compliance: ComplianceSummary
    next_checkin_s: int
    events: list[DomainEvent] = field(default_factory=list)

    def answer(self) -> dict[str, Any]:
        """The JSON answer the device gets."""
        return {
            "commands": [c.for_device() for c in self.commands],
            "collect": self.collect,
            "next_checkin_s": self.next_checkin_s,
            "compliance": self.compliance.to_json(),
            "seq": self.seq,
        }


class CheckinService:
    """Check-ins for authenticated devices (see the module docstring for the steps)."""

    def __init__(
        self,
        storage: Storage,
        privacy: PrivacyProfiles,
        commands: CommandService,
        *,
        history_length: int,
        compliance: ComplianceHook | None = None,
        next_checkin_s: int = 900,
        max_commands: int = 10,
        kick: Callable[[], None] | None = None,
        source_max_age: timedelta = DEFAULT_SOURCE_MAX_AGE,
    ) -> None:
        if storage is None or privacy is None or commands is None:
            raise ValueError("CheckinService needs storage, privacy profiles and commands")
        if history_length < 1 or next_checkin_s < 1 or max_commands < 1:
            raise ValueError("history_length, next_checkin_s and max_commands must be >= 1")
        self.storage = storage
        self.privacy = privacy
        self.commands = commands
        self.history_length = history_length
        self.compliance = compliance
        self.next_checkin_s = next_checkin_s
        self.max_commands = max_commands
        self._kick = kick
        self.source_max_age = source_max_age

    def set_compliance_hook(self, hook: ComplianceHook | None) -> None:
        """Plug the policy engine in (or out)."""
        self.compliance = hook

    def check_in(
        self,
        device: AuthenticatedDevice,
        report: Mapping[str, Any],
        fmt: str,
        now: datetime | None = None,
        *,
        uow: UnitOfWork | None = None,
    ) -> CheckinResult:
        """Process one report; in ``uow`` if given (the view verifies the proof in the same
        transaction), else in a unit of work of its own. Raises
        :class:`mdm_core.posture.normalize.ReportError` (and siblings) on bad input, before
        anything is written."""
        now = now or datetime.now(UTC)
        record = device.device
        profile = self.privacy.for_ownership(record.ownership)
        posture = self.posture_of(record, report, fmt, now, profile=profile)
        if uow is None:
            with self.storage.unit_of_work() as own:
                return self._store(own, device, posture, fmt, profile, now)
        return self._store(uow, device, posture, fmt, profile, now)

    def posture_of(
        self,
        record: DeviceRecord,
        report: Mapping[str, Any],
        fmt: str,
        received_at: datetime,
        *,
        profile: PrivacyProfile | None = None,
    ) -> Posture:
        """``report`` (format ``fmt``) of ``record`` as posture: normalised reading only the
        fields the device's privacy profile allows, then filtered by that profile again.
        Writes nothing. Raises :class:`mdm_core.posture.normalize.ReportError` (and
        siblings) on bad input."""
        profile = profile or self.privacy.for_ownership(record.ownership)
        return profile.apply(
            normalize(
                report, fmt, platform=record.platform, received_at=received_at,
                allow=profile.collect,
            )
        )  # fmt: skip

    def _store(
        self,
        uow: UnitOfWork,
        device: AuthenticatedDevice,
        posture: Posture,
        fmt: str,
        profile: PrivacyProfile,
        now: datetime,
    ) -> CheckinResult:
        record = device.device
        _, own_sources = merge_reports(None, None, posture, fmt)
        recorded = uow.posture.record(
            record.id,
            posture,
            received_at=now,
            history_length=self.history_length,
            sources=own_sources,
        )
        # A device with two sources (MDM channel + companion app): one merged posture.
        merged, sources = merge_reports(
            recorded.previous, recorded.previous_sources, posture, fmt, max_age=self.source_max_age
        )
        if merged is not posture:
            posture = profile.apply(merged)  # carried fields obey today's profile too
            uow.posture.replace_latest(
                record.id, recorded.seq, posture, sources, history_length=self.history_length
            )
        summary = None
        if self.compliance is not None:
            summary = self.compliance.after_checkin(uow, record, posture, recorded.previous, now)
        changes = security_changes(recorded.previous, posture)
        base = {
            "device_id": record.id,
            "user_id": record.user_id,
            "seq": recorded.seq,
            "platform": record.platform.value,
            "ownership": record.ownership.value,
            "collected_at": posture.collected_at.isoformat(),
        }
        events = [
            DomainEvent(
                type=EventType.POSTURE_REPORTED,
                subject=record.id,
                payload={**base, "format": fmt},
                occurred_at=now,
            )
        ]
        if changes:
            events.append(
                DomainEvent(
                    type=EventType.POSTURE_CHANGED,
                    subject=record.id,
                    payload={**base, "first_report": recorded.previous is None, "changes": changes},
                    occurred_at=now,
                )
            )
        delivered: list[Command] = []
        if recorded.commands_waiting is not False:
            delivered = self.commands.deliver(
                uow, record.id, now=now, limit=self.max_commands, events=events
            )
        uow.outbox.add(events)
        if self._kick is not None:
            uow.call_after(self._kick)
        return CheckinResult(
            device_id=record.id,
            seq=recorded.seq,
            posture=posture,
            changes=changes,
            commands=delivered,
            collect=profile.collect_list,
            compliance=summary or UNKNOWN_COMPLIANCE,
            next_checkin_s=self.next_checkin_s,
            events=events,
        )
