"""The seam between check-ins and compliance evaluation.

The check-in service calls :meth:`ComplianceHook.after_checkin` inside the check-in's unit of
work, after the new posture is stored, so compliance state, device status changes and their
events commit together with the posture. The policy engine implements the hook; with none
configured every device is ``unknown`` (and, fail closed, ``block``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from mdm_core.domain.model import DeviceRecord
from mdm_core.posture.model import Posture
from mdm_core.storage.uow import UnitOfWork

__all__ = ["ComplianceSummary", "ComplianceHook", "UNKNOWN_COMPLIANCE"]


@dataclass(frozen=True, slots=True)
class ComplianceSummary:
    """What the device is told about its compliance after a check-in."""

    state: str  # compliant | noncompliant | quarantined | unknown
    outcome: str  # allow | warn | restrict | block
    reasons: list[dict[str, Any]] = field(default_factory=list)  # machine-readable + remediation
    policy_ids: list[str] = field(default_factory=list)
    evaluated_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "outcome": self.outcome,
            "reasons": list(self.reasons),
            "policy_ids": list(self.policy_ids),
            "evaluated_at": None if self.evaluated_at is None else self.evaluated_at.isoformat(),
        }


#: No compliance evaluation configured: unknown, and (fail closed) not allowed.
UNKNOWN_COMPLIANCE = ComplianceSummary(
    state="unknown",
    outcome="block",
    reasons=[{"code": "no_compliance_policy", "message": "no compliance policy is configured"}],
)


class ComplianceHook(Protocol):
    def after_checkin(
        self,
        uow: UnitOfWork,
        device: DeviceRecord,
        posture: Posture,
        previous: Posture | None,
        now: datetime,
    ) -> ComplianceSummary | None:
        """Evaluate ``posture`` (already privacy-filtered and stored) for ``device`` inside the
        check-in's unit of work; persist state and write events through ``uow``. Returning
        ``None`` means "not evaluated" (reported as unknown). Raising aborts the check-in."""
        ...
