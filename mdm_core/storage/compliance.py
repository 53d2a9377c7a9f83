"""Compliance storage: each device's last compliance state, and when each rule first failed.

Grace timelines count from the first failure of a rule on a device, so that moment is kept
per (device, policy, rule) until the rule passes again.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

__all__ = ["ComplianceState", "ComplianceRecord", "ComplianceStore"]


class ComplianceState(StrEnum):
    COMPLIANT = "compliant"  # outcome allow
    NONCOMPLIANT = "noncompliant"  # warn, restrict or block (not quarantined)
    QUARANTINED = "quarantined"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ComplianceRecord:
    device_id: str
    state: ComplianceState
    outcome: str  # allow | warn | restrict | block
    reasons: list[dict[str, Any]]  # Reason.to_json() of the enforced reasons
    policy_ids: list[str]
    evaluated_at: datetime


class ComplianceStore(Protocol):
    def get_state(self, device_id: str) -> ComplianceRecord | None:
        """The device's last recorded compliance, or ``None`` if never evaluated/unknown."""
        ...

    def put_state(self, record: ComplianceRecord) -> None:
        """Insert or replace the device's compliance record.

        Raises :class:`mdm_core.domain.errors.NotFound` when the device does not exist.
        """
        ...

    def rule_failures(self, device_id: str) -> dict[tuple[str, str], datetime]:
        """(policy id, rule id) -> first failure time for the device; ``{}`` when none."""
        ...

    def evaluation_state(
        self, device_id: str
    ) -> tuple[ComplianceRecord | None, dict[tuple[str, str], datetime]]:
        """:meth:`get_state` and :meth:`rule_failures` together, in one query (the check-in
        hot path); ``(None, {})`` for an unknown device or one never evaluated."""
        ...

    def sync_rule_failures(
        self, device_id: str, failing: Collection[tuple[str, str]], *, at: datetime
    ) -> dict[tuple[str, str], datetime]:
        """Make ``failing`` the device's failing rules: rules newly failing get ``at`` as
        their first failure, still failing ones keep theirs, every other row is deleted (the
        rule passed, or no longer applies). Returns the resulting map; empty ``failing``
        clears the device. Raises :class:`mdm_core.domain.errors.NotFound` for an unknown device
        when a row must be inserted."""
        ...
