"""The decision vocabulary: what the engine is asked (:class:`EvaluationInput`) and what it
answers (:class:`Decision`, :class:`Reason`).

Pure data, no I/O. ``Outcome`` is ordered from most to least permissive
(``allow < warn < restrict < block``); the engine combines rule results with ``max``.
Every reason carries a stable machine-readable ``code`` (see :class:`ReasonCode`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

from mdm_core.domain.model import DeviceRecord
from mdm_core.posture.model import Posture

__all__ = [
    "Outcome",
    "Severity",
    "ReasonCode",
    "Reason",
    "Restrictions",
    "UserContext",
    "EvaluationInput",
    "Decision",
    "RuleKey",
]

#: (policy id, rule id): how grace timelines are keyed per device.
RuleKey = tuple[str, str]


class Outcome(StrEnum):
    """Access outcome, ordered: ``allow < warn < restrict < block``."""

    ALLOW = "allow"
    WARN = "warn"
    RESTRICT = "restrict"
    BLOCK = "block"

    @property
    def rank(self) -> int:
        return _OUTCOME_RANK[self]

    @property
    def grants_access(self) -> bool:
        return self is not Outcome.BLOCK

    @staticmethod
    def worst(*outcomes: Outcome) -> Outcome:
        """The least permissive of ``outcomes`` (``allow`` when empty)."""
        best = Outcome.ALLOW
        for outcome in outcomes:
            if _OUTCOME_RANK[outcome] > _OUTCOME_RANK[best]:
                best = outcome
        return best


_OUTCOME_RANK = {Outcome.ALLOW: 0, Outcome.WARN: 1, Outcome.RESTRICT: 2, Outcome.BLOCK: 3}


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class ReasonCode(StrEnum):
    """Stable machine-readable reason codes."""

    RULE_FAILED = "rule_failed"
    POSTURE_MISSING = "posture_missing"
    POSTURE_STALE = "posture_stale"
    NO_COMPLIANCE_POLICY = "no_compliance_policy"
    DEVICE_UNKNOWN = "device_unknown"
    DEVICE_NOT_OWNED = "device_not_owned"
    DEVICE_QUARANTINED = "device_quarantined"
    DEVICE_PENDING_VERIFICATION = "device_pending_verification"
    DEVICE_RETIRED = "device_retired"
    DEVICE_WIPED = "device_wiped"
    USER_UNKNOWN = "user_unknown"
    USER_INACTIVE = "user_inactive"
    APP_DENIES_OUTCOME = "app_denies_outcome"
    POLICY_SET_UNAVAILABLE = "policy_set_unavailable"
    EVALUATION_ERROR = "evaluation_error"


class Reason(NamedTuple):
    """Why a decision is what it is. Rule reasons carry rule, policy, severity and stage.

    (Immutable value types on the hot path are ``NamedTuple``: building one costs a fifth
    of a frozen dataclass, which matters at ~20 µs per decision.)
    """

    code: ReasonCode
    message: str
    outcome: Outcome
    policy_id: str | None = None
    rule_id: str | None = None
    severity: Severity | None = None
    remediation: str | None = None
    first_failed_at: datetime | None = None
    escalates_at: datetime | None = None  # when a grace stage turns into a harsher one

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code.value,
            "message": self.message,
            "outcome": self.outcome.value,
            "policy_id": self.policy_id,
            "rule_id": self.rule_id,
            "severity": self.severity.value if self.severity else None,
            "remediation": self.remediation,
            "first_failed_at": _iso(self.first_failed_at),
            "escalates_at": _iso(self.escalates_at),
        }


class Restrictions(NamedTuple):
    """What a ``restrict`` outcome still allows. ``allowed_scopes=None``: no scope cap."""

    allowed_scopes: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "allowed_scopes": list(self.allowed_scopes) if self.allowed_scopes is not None else None
        }


@dataclass(frozen=True, slots=True)
class UserContext:
    """The user as the directory mirror knows them; ``groups`` are effective group names."""

    id: str
    groups: frozenset[str]
    active: bool


@dataclass(frozen=True, slots=True)
class EvaluationInput:
    """Everything one decision depends on. ``now`` is passed in: the engine reads no clock.

    ``posture_age``: how old the posture is by the server's clock (time since it was
    received, or zero for a fresh signed snapshot). ``None`` with a posture present means
    "compute from ``posture.collected_at``". ``rule_failures`` maps (policy id, rule id) to
    when that rule first failed on this device; a failing rule absent from it fails "now".
    """

    user: UserContext | None
    device: DeviceRecord | None
    posture: Posture | None
    now: datetime
    posture_age: timedelta | None = None
    app: str | None = None
    rule_failures: Mapping[RuleKey, datetime] = field(default_factory=dict)


class Decision(NamedTuple):
    """The engine's answer.

    ``outcome`` is final for ``app`` (an app that denies ``restrict`` turns it into
    ``block``). ``failing_rules`` lists every enforced rule that failed (grace bookkeeping:
    the rest of the evaluated rules passed);
    ``report_only`` holds findings of report-only policies, never enforced.
    """

    outcome: Outcome
    reasons: tuple[Reason, ...]
    policy_ids: tuple[str, ...]  # policies that fired (produced an enforced reason)
    evaluated_policy_ids: tuple[str, ...]
    posture_age: timedelta | None
    quarantine: bool
    restrictions: Restrictions
    report_only: tuple[Reason, ...]
    failing_rules: frozenset[RuleKey]
    evaluated_at: datetime
    app: str | None = None

    @property
    def grants_access(self) -> bool:
        return self.outcome.grants_access

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "reasons": [r.to_json() for r in self.reasons],
            "policy_ids": list(self.policy_ids),
            "evaluated_policy_ids": list(self.evaluated_policy_ids),
            "posture_age_s": self.posture_age.total_seconds()
            if self.posture_age is not None
            else None,
            "quarantine": self.quarantine,
            "restrictions": self.restrictions.to_json(),
            "report_only": [r.to_json() for r in self.report_only],
            "failing_rules": sorted(f"{p}/{r}" for p, r in self.failing_rules),
            "evaluated_at": self.evaluated_at.isoformat(),
            "app": self.app,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
