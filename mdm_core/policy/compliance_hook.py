"""The policy engine behind check-ins: :class:`PolicyComplianceHook`.

Implements :class:`mdm_core.device.compliance_hook.ComplianceHook`. Inside the check-in's unit of
work it evaluates the new posture against the policy set in force, then:

- keeps per (device, policy, rule) the first failure time, cleared when the rule passes
  (grace timelines count from it);
- quarantines the device on any critical failure (status ``quarantined``); a device that
  re-enrolled after quarantine (``pending_verification``) becomes ``active`` at the first
  check-in that passes every critical rule, and is quarantined again otherwise; a quarantined
  device stays quarantined whatever it reports (an admin release or a re-enrollment with a
  fresh user-bound token must let it out, :mod:`mdm_core.domain.quarantine`); quarantine revokes the
  device's access credentials in the same unit of work (:mod:`mdm_core.domain.device_lifecycle`);
- revokes the device's access credentials in the same unit of work when the outcome becomes
  ``block`` without quarantine (a non-critical rule past its grace reaching ``block``, or any
  other blocking reason): reason ``posture_block``; a quarantine revokes through the status
  change instead, and a device already blocked holds nothing to revoke (no login succeeds);
- records the compliance state and writes ``compliance.changed`` to the outbox when the
  state, outcome or set of failing rules changed.

Hot path: the stored state and the rule failures are read in one query, and each is written
only when it changes (most check-ins change nothing), so the stored ``evaluated_at`` is the
time of the evaluation that produced the recorded verdict; ``devices.last_checkin_at`` says
when the device was last evaluated.

Compliance is a property of the device: the owner's groups select the policies, but whether
the account is active is checked at every login, not here.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta
from typing import Any

from mdm_core.access.evaluate import ChosenPosture, evaluate_state
from mdm_core.access.state import AccessState
from mdm_core.bus.events import DomainEvent, EventType
from mdm_core.device.compliance_hook import ComplianceSummary
from mdm_core.directory.mirror import effective_group_names
from mdm_core.domain.device_lifecycle import change_status, end_device_access
from mdm_core.domain.model import DeviceRecord, DeviceStatus
from mdm_core.policy.compiled import CompiledPolicySet
from mdm_core.policy.errors import PolicySetUnavailable
from mdm_core.policy.model import (
    Decision,
    Outcome,
    Reason,
    ReasonCode,
    UserContext,
)
from mdm_core.policy.repository import PolicyRepository
from mdm_core.posture.model import Posture
from mdm_core.storage.compliance import ComplianceRecord, ComplianceState
from mdm_core.storage.uow import UnitOfWork

__all__ = [
    "PolicyComplianceHook",
    "compliance_state_of",
    "compliance_changed_event",
    "verdict_changed",
    "outcome_changed",
    "record_verdict",
]

log = logging.getLogger(__name__)


def compliance_state_of(decision: Decision, status: DeviceStatus) -> ComplianceState:
    """The stored state for a decision on a device whose (new) status is ``status``."""
    if status is DeviceStatus.QUARANTINED:
        return ComplianceState.QUARANTINED
    if decision.outcome is Outcome.ALLOW:
        return ComplianceState.COMPLIANT
    return ComplianceState.NONCOMPLIANT


class PolicyComplianceHook:
    """Compliance evaluation at check-in, on the set held by ``repository``."""

    def __init__(self, repository: PolicyRepository) -> None:
        if repository is None:
            raise ValueError("PolicyComplianceHook needs a policy repository")
        self.repository = repository

    def _policies(self, now: datetime) -> CompiledPolicySet:
        try:
            return self.repository.current()
        except PolicySetUnavailable:
            log.error("no valid policy set: device compliance evaluated as blocked")
            return CompiledPolicySet.empty(now)

    def after_checkin(
        self,
        uow: UnitOfWork,
        device: DeviceRecord,
        posture: Posture,
        previous: Posture | None,
        now: datetime,
    ) -> ComplianceSummary | None:
        policies = self._policies(now)
        owner = UserContext(
            id=device.user_id, groups=effective_group_names(uow, device.user_id), active=True
        )
        before, failures = uow.compliance.evaluation_state(device.id)  # one query
        # Evaluate the posture itself: the device's current status is applied below.
        as_active = dataclasses.replace(device, status=DeviceStatus.ACTIVE)
        # The access decision's own evaluation step, on the posture just stored (age 0).
        decision = evaluate_state(
            AccessState(user=owner, device=as_active, rule_failures=failures),
            ChosenPosture(posture=posture, age=timedelta(0)),
            app=None,
            now=now,
            policies=policies,
        )
        if decision.failing_rules != failures.keys():  # most check-ins change nothing
            uow.compliance.sync_rule_failures(device.id, decision.failing_rules, at=now)
        if decision.report_only:
            log.info(
                "report-only findings for device %s: %s",
                device.id,
                ", ".join(
                    f"{r.policy_id}/{r.rule_id or r.code.value}" for r in decision.report_only
                ),
            )

        status = self._next_status(uow, device, decision, now)
        state = compliance_state_of(decision, status)
        outcome = Outcome.BLOCK if state is ComplianceState.QUARANTINED else decision.outcome
        reasons = [r.to_json() for r in decision.reasons]
        if status is DeviceStatus.QUARANTINED and not decision.quarantine:
            reasons.insert(0, _still_quarantined().to_json())
        record = ComplianceRecord(
            device_id=device.id,
            state=state,
            outcome=outcome.value,
            reasons=reasons,
            policy_ids=list(decision.policy_ids),
            evaluated_at=now,
        )
        record_verdict(uow, device, before, record, status, decision, policies, now)
        return ComplianceSummary(
            state=state.value,
            outcome=outcome.value,
            reasons=reasons,
            policy_ids=list(decision.policy_ids),
            evaluated_at=now,
        )

    def _next_status(
        self, uow: UnitOfWork, device: DeviceRecord, decision: Decision, now: datetime
    ) -> DeviceStatus:
        current = device.status
        if current in (DeviceStatus.RETIRED, DeviceStatus.WIPED):
            return current
        new = current
        reason: str | None = device.status_reason
        if decision.quarantine:
            if current is not DeviceStatus.QUARANTINED:
                critical = [
                    f"{r.policy_id}/{r.rule_id}"
                    for r in decision.reasons
                    if r.rule_id is not None
                    and r.severity is not None
                    and r.outcome is Outcome.BLOCK
                ]
                new, reason = (
                    DeviceStatus.QUARANTINED,
                    "critical rule failed: " + ", ".join(sorted(critical)),
                )
        elif current is DeviceStatus.PENDING_VERIFICATION:
            new, reason = DeviceStatus.ACTIVE, "passed the check-in after re-enrollment"
        if new is not current:
            # Quarantine revokes the device's tokens in this same transaction.
            change_status(uow, device.id, new, reason=reason, at=now)
            log.warning("device %s status %s -> %s (%s)", device.id, current, new, reason)
        return new


def record_verdict(
    uow: UnitOfWork,
    device: DeviceRecord,
    before: ComplianceRecord | None,
    record: ComplianceRecord,
    status: DeviceStatus,
    decision: Decision,
    policies: CompiledPolicySet,
    now: datetime,
    *,
    revoke_reason: str = "posture_block",
    cause: str | None = None,
) -> int:
    """Store a new verdict in ``uow`` (check-in or stale sweep): the state when it changed; a
    newly blocking outcome without quarantine ends the device's sessions and tokens now
    (``revoke_reason``; a quarantine revokes through its status change), after
    ``compliance.changed`` when the outcome changed (the cause before its effect in the
    outbox). Returns how many live credentials ended."""
    if verdict_changed(before, record):
        uow.compliance.put_state(record)
    if outcome_changed(before, record):
        uow.outbox.add(
            [
                compliance_changed_event(
                    device, record, before, status, decision, policies, cause=cause
                )
            ]
        )
    revoked = 0
    if (
        record.outcome == Outcome.BLOCK.value
        and status is not DeviceStatus.QUARANTINED
        and (before is None or before.outcome != Outcome.BLOCK.value)
    ):
        revoked = end_device_access(uow, device.id, reason=revoke_reason, at=now)
    return revoked


def compliance_changed_event(
    device: DeviceRecord,
    record: ComplianceRecord,
    before: ComplianceRecord | None,
    status: DeviceStatus,
    decision: Decision,
    policies: CompiledPolicySet,
    *,
    cause: str | None = None,
) -> DomainEvent:
    """The ``compliance.changed`` event for a newly recorded verdict (check-in or sweep;
    ``cause``, when given, is added to the payload: ``posture_stale`` from the sweep)."""
    payload: dict[str, Any] = {
        "device_id": device.id,
        "user_id": device.user_id,
        "state": record.state.value,
        "previous_state": before.state.value if before else None,
        "outcome": record.outcome,
        "previous_outcome": before.outcome if before else None,
        "device_status": status.value,
        "quarantined": status is DeviceStatus.QUARANTINED,
        "policy_ids": list(decision.policy_ids),
        "failing_rules": sorted(f"{p}/{r}" for p, r in decision.failing_rules),
        "policy_set": policies.fingerprint,
    }
    if cause is not None:
        payload["cause"] = cause
    return DomainEvent(
        type=EventType.COMPLIANCE_CHANGED,
        subject=device.id,
        payload=payload,
        occurred_at=record.evaluated_at,
    )


def _still_quarantined() -> Reason:
    return Reason(
        code=ReasonCode.DEVICE_QUARANTINED,
        message="This device is quarantined after a critical compliance failure.",
        outcome=Outcome.BLOCK,
        remediation=(
            "Ask your IT administrator to release the device (or re-enroll it with a new "
            "enrollment token); access returns after a passing check-in."
        ),
    )


def outcome_changed(before: ComplianceRecord | None, after: ComplianceRecord) -> bool:
    if before is None:
        return True
    return (
        before.state != after.state
        or before.outcome != after.outcome
        or _rule_ids(before) != _rule_ids(after)
    )


def verdict_changed(before: ComplianceRecord | None, after: ComplianceRecord) -> bool:
    """Whether the stored record must be rewritten: anything but the evaluation time."""
    return before is None or dataclasses.replace(before, evaluated_at=after.evaluated_at) != after


def _rule_ids(record: ComplianceRecord) -> set[tuple[object, object]]:
    return {(r.get("policy_id"), r.get("rule_id")) for r in record.reasons}
