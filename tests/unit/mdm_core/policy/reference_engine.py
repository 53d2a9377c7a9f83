"""The test oracle: today's engine (2026-12-01, before the perf-policy work), frozen and
written the straightforward way.

It reads only the semantic parts of a compiled set (``policies.compliance``, each policy's
``assign``/``enforce``/``max_posture_age``/``rules``, each rule's ``applies``/``check``/
``grace``), never the indexes, scanners or precomputed tables the production engine uses, and
evaluates every rule with its own closure. The production engine must give a field-for-field
equal :class:`~mdm_core.policy.model.Decision` on every input
(``test_engine_equivalence.py``). Do not optimise this file: its value is being obvious.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from mdm_core.domain.model import DeviceStatus
from mdm_core.policy.cel import CelEvaluationError
from mdm_core.policy.checks import RuleEnv
from mdm_core.policy.compiled import AccessPolicy, AppAccess, CompiledPolicySet, CompliancePolicy
from mdm_core.policy.model import (
    Decision,
    EvaluationInput,
    Outcome,
    Reason,
    ReasonCode,
    Restrictions,
    RuleKey,
    Severity,
)
from mdm_core.posture.model import Ownership, Platform

__all__ = ["reference_evaluate"]

log = logging.getLogger(__name__)

#: A posture "collected" further in the future than this is not trusted as fresh.
MAX_CLOCK_SKEW = timedelta(minutes=5)
#: Apps no access policy names are treated like this tier: warn allowed, restrict denied.
UNLISTED_APP_SENSITIVITY = "medium"

_DEVICE_STATUS_REASONS: dict[DeviceStatus, tuple[ReasonCode, str]] = {
    DeviceStatus.QUARANTINED: (
        ReasonCode.DEVICE_QUARANTINED,
        "This device is quarantined after a critical compliance failure.",
    ),
    DeviceStatus.PENDING_VERIFICATION: (
        ReasonCode.DEVICE_PENDING_VERIFICATION,
        "This device re-enrolled after quarantine and has not yet passed a check-in.",
    ),
    DeviceStatus.RETIRED: (ReasonCode.DEVICE_RETIRED, "This device is retired."),
    DeviceStatus.WIPED: (ReasonCode.DEVICE_WIPED, "This device was wiped."),
}
_REMEDIATION_REENROLL = (
    "Fix the problem, then ask your IT administrator to release the device (or to give you "
    "a new enrollment token to re-enroll it) and let it check in; access returns once the "
    "check-in passes."
)
_NO_RESTRICTIONS = Restrictions()
_EMPTY: frozenset[RuleKey] = frozenset()
_PLATFORM_NAMES = {p: p.value for p in Platform}
_OWNERSHIP_NAMES = {o: o.value for o in Ownership}
_SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.HIGH: 1, Severity.MEDIUM: 2, Severity.LOW: 3}


def reference_evaluate(request: EvaluationInput, policies: CompiledPolicySet) -> Decision:
    """Decide access for ``request`` under ``policies``. Never raises: errors block."""
    try:
        return _evaluate(request, policies)
    except Exception as exc:  # fail closed on anything unexpected
        log.exception("policy evaluation failed; blocking")
        reason = Reason(
            code=ReasonCode.EVALUATION_ERROR,
            message=f"The access decision could not be computed ({type(exc).__name__}).",
            outcome=Outcome.BLOCK,
        )
        return _decision(request, Outcome.BLOCK, [reason], quarantine=False)


def _block(code: ReasonCode, message: str, remediation: str | None = None) -> Reason:
    return Reason(code=code, message=message, outcome=Outcome.BLOCK, remediation=remediation)


def _evaluate(request: EvaluationInput, policies: CompiledPolicySet) -> Decision:
    now = request.now
    reasons: list[Reason] = []
    quarantine = False
    user = request.user
    if user is None:
        reasons.append(_block(ReasonCode.USER_UNKNOWN, "The user is not in the directory."))
    elif not user.active:
        reasons.append(_block(ReasonCode.USER_INACTIVE, "The user account is disabled."))
    device = request.device
    if device is None:
        reasons.append(
            _block(
                ReasonCode.DEVICE_UNKNOWN,
                "The device is unknown or not enrolled.",
                "Enroll this device, or sign in from an enrolled device.",
            )
        )
        return _decision(request, Outcome.BLOCK, reasons, quarantine=False)
    if user is not None and device.user_id != user.id:
        reasons.append(
            _block(ReasonCode.DEVICE_NOT_OWNED, "The device is enrolled to another user.")
        )
    status_reason = _DEVICE_STATUS_REASONS.get(device.status)
    if status_reason is not None:
        code, message = status_reason
        remediation = (
            _REMEDIATION_REENROLL
            if device.status in (DeviceStatus.QUARANTINED, DeviceStatus.PENDING_VERIFICATION)
            else None
        )
        reasons.append(_block(code, message, remediation))
        quarantine = device.status is DeviceStatus.QUARANTINED

    groups = user.groups if user is not None else frozenset()
    platform, ownership = device.platform, device.ownership
    applicable = [p for p in policies.compliance if p.assign.matches(groups, platform, ownership)]
    enforced = [p for p in applicable if p.enforce]
    report_only: list[Reason] = []
    if not enforced:
        reasons.append(
            _block(
                ReasonCode.NO_COMPLIANCE_POLICY,
                "No compliance policy applies to this device, so it cannot be compliant.",
                "Ask your administrator to assign a compliance policy.",
            )
        )

    posture = request.posture
    age: timedelta | None = None
    failing: set[RuleKey] = set()
    if posture is None:
        reasons.append(
            _block(
                ReasonCode.POSTURE_MISSING,
                "The device has not reported its posture.",
                "Open the agent and let the device check in.",
            )
        )
    else:
        age = request.posture_age if request.posture_age is not None else now - posture.collected_at
        _staleness(age, applicable, reasons, report_only)
        if posture.platform != platform:
            reasons.append(
                _block(
                    ReasonCode.POSTURE_STALE,
                    "The posture report is for another platform than the enrolled device.",
                )
            )
        env = RuleEnv(
            platform=_PLATFORM_NAMES[platform],
            ownership=_OWNERSHIP_NAMES[ownership],
            user_id=user.id if user is not None else "",
            groups=groups,
            now=now,
        )
        failures = request.rule_failures
        for policy in applicable:
            enforce = policy.enforce
            for rule in policy.rules:
                if not rule.applies(platform, ownership):
                    continue
                error: CelEvaluationError | None = None
                try:
                    passed = rule.check(posture, env)
                except CelEvaluationError as exc:
                    passed, error = False, exc
                if passed:
                    continue
                if rule.check_key == "cel":
                    detail = f" (condition could not be evaluated: {error})" if error else ""
                else:
                    detail = _unreported(posture, rule.fields)
                key = rule.key
                first = failures.get(key, now)
                if rule.critical:
                    outcome, escalates_at = Outcome.BLOCK, None
                else:
                    elapsed = max(now - first, timedelta(0))
                    outcome, following = rule.stage(elapsed)
                    escalates_at = first + following if following is not None else None
                reason = Reason(
                    code=ReasonCode.RULE_FAILED,
                    message=rule.message + detail,
                    outcome=outcome,
                    policy_id=policy.id,
                    rule_id=rule.id,
                    severity=rule.severity,
                    remediation=rule.remediation,
                    first_failed_at=first,
                    escalates_at=escalates_at,
                )
                if enforce:
                    reasons.append(reason)
                    failing.add(key)
                    # Quarantine needs evidence: a critical rule whose fields the device
                    # REPORTED failing (jailbroken: true, encryption: false) quarantines; one
                    # that fails because a field was not reported (an Apple MDM answer has no
                    # jailbreak signal until the companion app reports) blocks all the same,
                    # without the quarantine that only re-enrollment lifts.
                    quarantine = quarantine or (rule.critical and _reported(posture, rule.fields))
                else:
                    report_only.append(reason)

    outcome = Outcome.worst(*(r.outcome for r in reasons)) if reasons else Outcome.ALLOW
    restrictions = _NO_RESTRICTIONS
    if request.app is not None and outcome in (Outcome.WARN, Outcome.RESTRICT):
        outcome, restrictions, app_reason = _apply_app(
            policies.access.get(request.app), request.app, outcome
        )
        if app_reason is not None:
            reasons.append(app_reason)
    return _decision(
        request,
        outcome,
        reasons,
        quarantine=quarantine,
        age=age,
        restrictions=restrictions,
        report_only=report_only,
        evaluated=[p.id for p in applicable],  # (ids in set order: deterministic)
        failing=failing,
    )


def _unreported(posture: object, fields: tuple[str, ...]) -> str:
    """Say which fields a failed rule lacked, so that "not reported" never reads as "off"."""
    missing = [name for name in fields if getattr(posture, name, None) is None]
    if not missing:
        return ""
    return " This device did not report: " + ", ".join(n.replace("_", " ") for n in missing) + "."


def _reported(posture: object, fields: tuple[str, ...]) -> bool:
    """Every field the rule reads was reported (not ``None``)."""
    return all(getattr(posture, name, None) is not None for name in fields)


def _staleness(
    age: timedelta,
    applicable: list[CompliancePolicy],
    reasons: list[Reason],
    report_only: list[Reason],
) -> None:
    if age >= timedelta(0) and all(age <= p.max_posture_age for p in applicable):
        return  # the common case: fresh for every policy
    if age < -MAX_CLOCK_SKEW:
        reasons.append(
            _block(
                ReasonCode.POSTURE_STALE,
                "The posture report is dated in the future; it is not trusted as fresh.",
                "Check the device clock, then let the device check in.",
            )
        )
        return
    for enforce in (True, False):
        stale = [p for p in applicable if p.enforce is enforce and age > p.max_posture_age]
        if not stale:
            continue
        tightest = min(stale, key=lambda p: (p.max_posture_age, p.id))
        reason = Reason(
            code=ReasonCode.POSTURE_STALE,
            message=(
                f"The device last reported its posture {int(age.total_seconds())}s ago; "
                f"policy {tightest.id} accepts at most "
                f"{int(tightest.max_posture_age.total_seconds())}s."
            ),
            outcome=Outcome.BLOCK,
            policy_id=tightest.id,
            remediation="Open the agent and let the device check in, then try again.",
        )
        (reasons if enforce else report_only).append(reason)


def _apply_app(
    policy: AccessPolicy | None, app: str, outcome: Outcome
) -> tuple[Outcome, Restrictions, Reason | None]:
    if policy is None:
        access, scopes, policy_id = AppAccess.ALLOW, None, None
        if outcome is Outcome.RESTRICT:
            access = AppAccess.DENY
    elif outcome is Outcome.WARN:
        access, scopes, policy_id = policy.warn, policy.warn_scopes, policy.id
    else:
        access, scopes, policy_id = policy.restrict, policy.restrict_scopes, policy.id
    if access is AppAccess.DENY:
        reason = Reason(
            code=ReasonCode.APP_DENIES_OUTCOME,
            message=(
                f"This application does not admit devices in the {outcome.value} state"
                + ("" if policy is not None else " (no access policy names it)")
                + "."
            ),
            outcome=Outcome.BLOCK,
            policy_id=policy_id,
            remediation="Fix the problems listed for this device to use this application.",
        )
        return Outcome.BLOCK, _NO_RESTRICTIONS, reason
    if access is AppAccess.SCOPES:
        return outcome, Restrictions(allowed_scopes=scopes), None
    return outcome, _NO_RESTRICTIONS, None


def _reason_order(reason: Reason) -> tuple[int, int, str, str, str]:
    return (
        -reason.outcome.rank,
        _SEVERITY_RANK[reason.severity] if reason.severity is not None else -1,
        reason.policy_id or "",
        reason.rule_id or "",
        reason.code.value,
    )


def _decision(
    request: EvaluationInput,
    outcome: Outcome,
    reasons: list[Reason],
    *,
    quarantine: bool,
    age: timedelta | None = None,
    restrictions: Restrictions | None = None,
    report_only: list[Reason] | None = None,
    evaluated: list[str] | None = None,
    failing: set[RuleKey] | None = None,
) -> Decision:
    if reasons:
        ordered = tuple(sorted(reasons, key=_reason_order))
        fired = tuple(sorted({r.policy_id for r in ordered if r.policy_id is not None}))
    else:
        ordered, fired = (), ()
    return Decision(
        outcome,
        ordered,
        fired,
        tuple(evaluated) if evaluated else (),
        age,
        quarantine,
        restrictions or _NO_RESTRICTIONS,
        tuple(sorted(report_only, key=_reason_order)) if report_only else (),
        frozenset(failing) if failing else _EMPTY,
        request.now,
        request.app,
    )
