"""The ONE access decision type: :class:`Decision`, its :class:`Reason` s, and how to build it.

Every channel (browser login, token refresh, Entra EAM, the posture decision API, the Okta
hook, what-if) gets a :class:`Decision` from :class:`mdm_core.access.evaluator.AccessEvaluator`
and translates it to its protocol (ID token claims, an Entra ``id_token``, JSON, Okta
commands). The fields are decision facts, never protocol objects:

- ``outcome`` ``allow | warn | restrict | block`` and the ``reasons`` behind it (stable
  machine-readable ``code``, plain-words ``message``, the policy and rule that fired, the
  rule's own ``remediation``), plus ``remediation`` (the distinct fixes, in order);
- ``policy_ids`` (policies that fired), ``evaluated_policy_ids`` (policies that applied),
  ``report_only`` (codes of report-only findings), ``quarantine``;
- ``device_id`` (the proven device, ``None`` when none was proven), ``device`` (how pages name
  it), ``posture_age_s``, ``snapshot`` (``used | refused | stale | older``; ``None`` when the
  proof carried none), ``evaluated_at``;
- ``allowed_scopes`` (``restrict`` only: the scopes the policy lets through; ``None`` = as
  requested), ``deadline`` (``warn``: when a grace stage turns harsher);
- ``unavailable``: the block is there because no decision could be made (store, policy set
  or audit down). Channels that can say "try again" without spending anything (refresh: 503,
  posture API: 503) do; every other channel treats it as the block it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from mdm_core.domain.model import DeviceRecord
from mdm_core.policy.model import Decision as EngineDecision
from mdm_core.policy.model import Outcome as EngineOutcome
from mdm_core.posture.model import Posture

__all__ = [
    "Outcome",
    "OUTCOMES",
    "Reason",
    "Decision",
    "block",
    "from_engine",
    "device_label",
]

Outcome = Literal["allow", "warn", "restrict", "block"]
OUTCOMES: tuple[Outcome, ...] = ("allow", "warn", "restrict", "block")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Reason:
    """One machine-readable reason behind a decision, with the plain-words text users see.

    ``code`` is stable (e.g. ``encryption_off``, ``posture_stale``, ``proof_replayed``);
    ``message`` says what is wrong in plain words; ``policy_id`` / ``rule_id`` name the rule
    that fired; ``remediation`` is that rule's own fix (from the policy file), when it has one.
    """

    code: str
    message: str
    policy_id: str | None = None
    severity: str | None = None
    remediation: str | None = None
    rule_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "policy_id": self.policy_id,
            "severity": self.severity,
            "remediation": self.remediation,
            "rule_id": self.rule_id,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Reason:
        return cls(
            code=str(data["code"]),
            message=str(data["message"]),
            policy_id=data.get("policy_id"),
            severity=data.get("severity"),
            remediation=data.get("remediation"),
            rule_id=data.get("rule_id"),
        )


@dataclass(frozen=True)
class Decision:
    """The answer to one access request (see the module docstring for each field)."""

    outcome: Outcome
    reasons: tuple[Reason, ...] = ()
    remediation: tuple[str, ...] = ()
    policy_ids: tuple[str, ...] = ()
    evaluated_policy_ids: tuple[str, ...] = ()
    evaluated_at: datetime = field(default_factory=_utcnow)
    posture_age_s: float | None = None
    device_id: str | None = None
    device: str | None = None
    allowed_scopes: frozenset[str] | None = None
    deadline: datetime | None = None
    snapshot: str | None = None
    report_only: tuple[str, ...] = ()
    quarantine: bool = False
    unavailable: bool = False

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}")

    @property
    def grants_access(self) -> bool:
        return self.outcome != "block"

    def to_json(self) -> dict[str, Any]:
        """JSON-ready; :meth:`from_json` reads it back to an equal decision."""
        return {
            "outcome": self.outcome,
            "reasons": [r.to_json() for r in self.reasons],
            "remediation": list(self.remediation),
            "policy_ids": list(self.policy_ids),
            "evaluated_policy_ids": list(self.evaluated_policy_ids),
            "evaluated_at": self.evaluated_at.isoformat(),
            "posture_age_s": self.posture_age_s,
            "device_id": self.device_id,
            "device": self.device,
            "allowed_scopes": sorted(self.allowed_scopes)
            if self.allowed_scopes is not None
            else None,
            "deadline": self.deadline.isoformat() if self.deadline is not None else None,
            "snapshot": self.snapshot,
            "report_only": list(self.report_only),
            "quarantine": self.quarantine,
            "unavailable": self.unavailable,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Decision:
        allowed = data.get("allowed_scopes")
        deadline = data.get("deadline")
        return cls(
            outcome=data["outcome"],
            reasons=tuple(Reason.from_json(r) for r in data.get("reasons", ())),
            remediation=tuple(data.get("remediation", ())),
            policy_ids=tuple(data.get("policy_ids", ())),
            evaluated_policy_ids=tuple(data.get("evaluated_policy_ids", ())),
            evaluated_at=datetime.fromisoformat(data["evaluated_at"]),
            posture_age_s=data.get("posture_age_s"),
            device_id=data.get("device_id"),
            device=data.get("device"),
            allowed_scopes=frozenset(allowed) if allowed is not None else None,
            deadline=datetime.fromisoformat(deadline) if deadline is not None else None,
            snapshot=data.get("snapshot"),
            report_only=tuple(data.get("report_only", ())),
            quarantine=bool(data.get("quarantine", False)),
            unavailable=bool(data.get("unavailable", False)),
        )


def block(
    code: str,
    message: str,
    *remediation: str,
    now: datetime | None = None,
    device_id: str | None = None,
    severity: str | None = None,
    unavailable: bool = False,
) -> Decision:
    """A ``block`` with one reason (refusals made before the engine, or around it)."""
    return Decision(
        outcome="block",
        reasons=(Reason(code=code, message=message, severity=severity),),
        remediation=tuple(remediation),
        evaluated_at=now or _utcnow(),
        device_id=device_id,
        unavailable=unavailable,
    )


def from_engine(
    decision: EngineDecision,
    *,
    device_id: str | None,
    device: str | None = None,
    snapshot: str | None = None,
) -> Decision:
    """The engine's decision as the one access decision."""
    seen: dict[str, None] = {}
    for r in decision.reasons:
        if r.remediation:
            seen.setdefault(r.remediation, None)
    allowed = decision.restrictions.allowed_scopes
    deadlines = [r.escalates_at for r in decision.reasons if r.escalates_at is not None]
    return Decision(
        outcome=decision.outcome.value,
        reasons=tuple(
            Reason(
                code=r.code.value,
                message=r.message,
                policy_id=r.policy_id,
                severity=r.severity.value if r.severity else None,
                remediation=r.remediation,
                rule_id=r.rule_id,
            )
            for r in decision.reasons
        ),
        remediation=tuple(seen),
        policy_ids=tuple(decision.policy_ids),
        evaluated_policy_ids=tuple(decision.evaluated_policy_ids),
        evaluated_at=decision.evaluated_at,
        posture_age_s=decision.posture_age.total_seconds()
        if decision.posture_age is not None
        else None,
        device_id=device_id,
        device=device,
        allowed_scopes=frozenset(allowed)
        if decision.outcome is EngineOutcome.RESTRICT and allowed is not None
        else None,
        deadline=min(deadlines) if deadlines else None,
        snapshot=snapshot,
        report_only=tuple(r.code.value for r in decision.report_only),
        quarantine=decision.quarantine,
    )


_PLATFORMS = {
    "ios": "iPhone",
    "ipados": "iPad",
    "macos": "Mac",
    "android": "Android device",
    "windows": "Windows PC",
    "linux": "Linux computer",
    "chromeos": "Chromebook",
}


def device_label(record: DeviceRecord | None, posture: Posture | None) -> str | None:
    """How pages name a device: ``Mac "MacBookPro18,3" (company-owned, ID 1a2b3c4d)``.

    The model appears only when the privacy profile let the device report it."""
    if record is None:
        return None
    kind = _PLATFORMS.get(record.platform.value, "device")
    model = posture.model if posture is not None and posture.model else None
    owner = "personal" if record.ownership.value == "byod" else "company-owned"
    name = f"{kind} “{model}”" if model else kind
    return f"{name} ({owner}, ID {record.id[:8]})"
