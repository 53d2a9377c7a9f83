"""The zero-tolerance decision engine: ``evaluate(EvaluationInput, CompiledPolicySet)``.

Pure and I/O-free: everything it depends on (user, device, posture and its age, the app, the
time, when each rule first failed on the device) is in the input, so the same input always
gives the same :class:`~mdm_core.policy.model.Decision`. The rules of DESIGN.md section 3:

- a critical rule failure blocks at once and quarantines (no grace);
- a non-critical failure follows its grace timeline from the rule's first failure on this
  device (no timeline: block at once);
- stale posture (older than the policy's ``max_posture_age``) and missing posture block;
- no device, another user's device, a quarantined / re-enrolled-but-unverified / retired /
  wiped device, an unknown or inactive user, and a device with no compliance policy block;
- report-only policies are evaluated and reported, never enforced;
- any exception while evaluating blocks (fail closed).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from mdm_core.domain.model import DeviceStatus
from mdm_core.policy.cel import CelEvaluationError
from mdm_core.policy.checks import RuleEnv
from mdm_core.policy.compiled import (
    AccessPolicy,
    AppAccess,
    CompiledPolicySet,
    CompliancePolicy,
    Plan,
)
from mdm_core.policy.index import OUTCOME_RANKS, SEVERITY_RANK, build_tables
from mdm_core.policy.model import (
    Decision,
    EvaluationInput,
    Outcome,
    Reason,
    ReasonCode,
    Restrictions,
    RuleKey,
)
from mdm_core.posture.model import Ownership, Platform

__all__ = [
    "evaluate",
    "evaluate_with_plan",
    "plan_for",
    "MAX_CLOCK_SKEW",
    "UNLISTED_APP_SENSITIVITY",
]

log = logging.getLogger(__name__)

#: A posture "collected" further in the future than this is not trusted as fresh.
MAX_CLOCK_SKEW = timedelta(minutes=5)
#: Apps no access policy names are treated like this tier: warn allowed, restrict denied.
UNLISTED_APP_SENSITIVITY = "medium"

_REMEDIATION_REENROLL = (
    "Fix the problem, then ask your IT administrator to release the device (or to give you "
    "a new enrollment token to re-enroll it) and let it check in; access returns once the "
    "check-in passes."
)
# Enum members bound once: ``Outcome.BLOCK`` is a class attribute lookup through the enum
# metaclass, several times slower than a module global, on a path run per failing rule.
_ALLOW, _WARN, _RESTRICT, _BLOCK = OUTCOME_RANKS
_RANK = {outcome: rank for rank, outcome in enumerate(OUTCOME_RANKS)}
_ALLOW_RANK, _BLOCK_RANK = _RANK[_ALLOW], _RANK[_BLOCK]
_RULE_FAILED = ReasonCode.RULE_FAILED
_USER_UNKNOWN, _USER_INACTIVE = ReasonCode.USER_UNKNOWN, ReasonCode.USER_INACTIVE
_DEVICE_UNKNOWN, _DEVICE_NOT_OWNED = ReasonCode.DEVICE_UNKNOWN, ReasonCode.DEVICE_NOT_OWNED
_NO_RESTRICTIONS = Restrictions()
_EMPTY: frozenset[RuleKey] = frozenset()
_NO_GROUPS: frozenset[str] = frozenset()
_ZERO = timedelta(0)
_PLATFORM_NAMES = {p: p.value for p in Platform}
_OWNERSHIP_NAMES = {o: o.value for o in Ownership}
_SEVERITY_RANK = SEVERITY_RANK
_Order = tuple[int, int, str, str, str]


def _block(code: ReasonCode, message: str, remediation: str | None = None) -> Reason:
    return Reason(code=code, message=message, outcome=_BLOCK, remediation=remediation)


#: The reasons that depend on nothing but their cause (immutable: shared by decisions).
_DEVICE_STATUS_REASONS: dict[DeviceStatus, Reason] = {
    DeviceStatus.QUARANTINED: _block(
        ReasonCode.DEVICE_QUARANTINED,
        "This device is quarantined after a critical compliance failure.",
        _REMEDIATION_REENROLL,
    ),
    DeviceStatus.PENDING_VERIFICATION: _block(
        ReasonCode.DEVICE_PENDING_VERIFICATION,
        "This device re-enrolled after quarantine and has not yet passed a check-in.",
        _REMEDIATION_REENROLL,
    ),
    DeviceStatus.RETIRED: _block(ReasonCode.DEVICE_RETIRED, "This device is retired."),
    DeviceStatus.WIPED: _block(ReasonCode.DEVICE_WIPED, "This device was wiped."),
}
_NO_POLICY_REASON = _block(
    ReasonCode.NO_COMPLIANCE_POLICY,
    "No compliance policy applies to this device, so it cannot be compliant.",
    "Ask your administrator to assign a compliance policy.",
)
_POSTURE_MISSING_REASON = _block(
    ReasonCode.POSTURE_MISSING,
    "The device has not reported its posture.",
    "Open the agent and let the device check in.",
)
_PLATFORM_MISMATCH_REASON = _block(
    ReasonCode.POSTURE_STALE,
    "The posture report is for another platform than the enrolled device.",
)


def evaluate(request: EvaluationInput, policies: CompiledPolicySet) -> Decision:
    """Decide access for ``request`` under ``policies``. Never raises: errors block."""
    try:
        return _evaluate(request, policies, None)
    except Exception as exc:  # fail closed on anything unexpected
        return _error_decision(request, exc)


def evaluate_with_plan(
    request: EvaluationInput, policies: CompiledPolicySet
) -> tuple[Decision, Plan | None]:
    """:func:`evaluate`, and the plan it evaluated (``None``: no device or no posture, or
    an error), for the decision cache's validity window."""
    trace: list[Plan] = []
    try:
        decision = _evaluate(request, policies, trace)
    except Exception as exc:  # fail closed on anything unexpected
        return _error_decision(request, exc), None
    return decision, trace[0] if trace else None


def _error_decision(request: EvaluationInput, exc: Exception) -> Decision:
    log.exception("policy evaluation failed; blocking")
    reason = Reason(
        code=ReasonCode.EVALUATION_ERROR,
        message=f"The access decision could not be computed ({type(exc).__name__}).",
        outcome=Outcome.BLOCK,
    )
    return _decision(request, Outcome.BLOCK, [reason], quarantine=False)


def plan_for(
    policies: CompiledPolicySet, groups: frozenset[str], platform: Platform, ownership: Ownership
) -> Plan:
    """The compliance policies that apply to a user in ``groups`` on a device of this
    platform and ownership (see :class:`~mdm_core.policy.compiled.ScopeTable`)."""
    table = policies.scopes.get((platform, ownership))
    if table is None:
        # A set built without its tables (only an empty one is, in this code): build them.
        table = build_tables(policies.compliance)[(platform, ownership)]
    return table.plan(groups)


def _evaluate(
    request: EvaluationInput, policies: CompiledPolicySet, trace: list[Plan] | None
) -> Decision:
    now = request.now
    reasons: list[Reason] = []
    quarantine = False
    user = request.user
    if user is None:
        reasons.append(_block(_USER_UNKNOWN, "The user is not in the directory."))
    elif not user.active:
        reasons.append(_block(_USER_INACTIVE, "The user account is disabled."))
    device = request.device
    if device is None:
        reasons.append(
            _block(
                _DEVICE_UNKNOWN,
                "The device is unknown or not enrolled.",
                "Enroll this device, or sign in from an enrolled device.",
            )
        )
        return _decision(request, _BLOCK, reasons, quarantine=False)
    if user is not None and device.user_id != user.id:
        reasons.append(_block(_DEVICE_NOT_OWNED, "The device is enrolled to another user."))
    status_reason = _DEVICE_STATUS_REASONS.get(device.status)
    if status_reason is not None:
        reasons.append(status_reason)
        quarantine = device.status is DeviceStatus.QUARANTINED

    groups = user.groups if user is not None else _NO_GROUPS
    platform, ownership = device.platform, device.ownership
    plan = plan_for(policies, groups, platform, ownership)
    report_only: list[Reason] = []
    if not plan.any_enforced:
        reasons.append(_NO_POLICY_REASON)

    posture = request.posture
    age: timedelta | None = None
    failing: set[RuleKey] = set()
    # sort keys of ``reasons`` / ``report_only``, kept from the first rule reason on
    orders: list[_Order] | None = None
    report_orders: list[_Order] | None = None
    if posture is None:
        reasons.append(_POSTURE_MISSING_REASON)
        worst = _BLOCK_RANK
    else:
        age = request.posture_age
        if age is None:
            age = now - posture.collected_at
        min_age = plan.min_age
        if age < _ZERO or (min_age is not None and age > min_age):
            _staleness(age, plan.compliance, reasons, report_only)
        if posture.platform != platform:
            reasons.append(_PLATFORM_MISMATCH_REASON)
        worst = _BLOCK_RANK if reasons else _ALLOW_RANK
        if trace is not None:
            trace.append(plan)
        env = tuple.__new__(
            RuleEnv,
            (
                _PLATFORM_NAMES[platform],
                _OWNERSHIP_NAMES[ownership],
                user.id if user is not None else "",
                groups,
                now,
            ),
        )
        failures = request.rule_failures
        for scoped in plan.policies:
            scanner = scoped.scanner
            if scanner is None:
                continue
            failed_at = scanner(posture, env)
            if not failed_at:
                continue
            enforce = scoped.enforce
            facts = scoped.facts
            for index in failed_at:
                cel_error = index < 0  # a CEL condition raised (see scan.build_scanner)
                if cel_error:
                    index = -1 - index
                (
                    rule,
                    key,
                    critical,
                    is_cel,
                    fields,
                    one_field,
                    message,
                    message_unreported,
                    outcome,
                    following,
                    grace,
                    order,
                    policy_id,
                    rule_id,
                    severity,
                    remediation,
                ) = facts[index]
                if is_cel:
                    if cel_error:  # ask again for the error's text (CEL is pure)
                        try:
                            rule.check(posture, env)
                        except CelEvaluationError as exc:
                            message = f"{message} (condition could not be evaluated: {exc})"
                    reported = critical and enforce and _reported(posture, fields)
                elif one_field is not None:
                    reported = getattr(posture, one_field, None) is not None
                    if not reported:
                        message = message_unreported
                else:
                    message += _unreported(posture, fields)
                    reported = critical and enforce and _reported(posture, fields)
                first = failures.get(key)
                if first is None:
                    first = now
                elif not critical and first < now:
                    outcome, following = _stage(grace, now - first)
                rank = _RANK[outcome]
                reason = tuple.__new__(
                    Reason,
                    (
                        _RULE_FAILED,
                        message,
                        outcome,
                        policy_id,
                        rule_id,
                        severity,
                        remediation,
                        first,
                        None if following is None else first + following,
                    ),
                )
                if enforce:
                    if orders is None:
                        orders = [_reason_order(r) for r in reasons]
                    reasons.append(reason)
                    orders.append(order[rank])
                    if rank > worst:
                        worst = rank
                    failing.add(key)
                    # Quarantine needs evidence: a critical rule whose fields the device
                    # REPORTED failing (jailbroken: true, encryption: false) quarantines; one
                    # that fails because a field was not reported (an Apple MDM answer has no
                    # jailbreak signal until the companion app reports) blocks all the same,
                    # without the quarantine that only re-enrollment lifts.
                    if critical and reported:
                        quarantine = True
                else:
                    if report_orders is None:
                        report_orders = [_reason_order(r) for r in report_only]
                    report_only.append(reason)
                    report_orders.append(order[rank])

    outcome = OUTCOME_RANKS[worst]
    restrictions = _NO_RESTRICTIONS
    if request.app is not None and (outcome is _WARN or outcome is _RESTRICT):
        outcome, restrictions, app_reason = _apply_app(
            policies.access.get(request.app), request.app, outcome
        )
        if app_reason is not None:
            reasons.append(app_reason)
            if orders is not None:
                orders.append(_reason_order(app_reason))
    return _decision(
        request,
        outcome,
        reasons,
        quarantine=quarantine,
        age=age,
        restrictions=restrictions,
        report_only=report_only,
        evaluated=plan.ids,  # (ids in set order: deterministic)
        failing=failing,
        orders=orders,
        report_orders=report_orders,
    )


def _stage(
    grace: tuple[tuple[timedelta, Outcome], ...], elapsed: timedelta
) -> tuple[Outcome, timedelta | None]:
    """:meth:`CompiledRule.stage` (outcome after failing for ``elapsed``, and when it
    escalates), inlined for the hot path."""
    current = _BLOCK
    for threshold, outcome in grace:
        if elapsed >= threshold:
            current = outcome
        else:
            return current, threshold
    return current, None


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
    applicable: Sequence[CompliancePolicy],
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
    evaluated: tuple[str, ...] = (),
    failing: set[RuleKey] | None = None,
    orders: list[_Order] | None = None,
    report_orders: list[_Order] | None = None,
) -> Decision:
    """The decision; ``orders``/``report_orders`` (when given) are the sort keys of
    ``reasons``/``report_only``, index for index (:func:`_reason_order`)."""
    if reasons:
        ordered = _sorted(reasons, orders)
        policy_ids = tuple(sorted({r.policy_id for r in ordered if r.policy_id is not None}))
    else:
        ordered, policy_ids = (), ()
    return tuple.__new__(
        Decision,
        (
            outcome,
            ordered,
            policy_ids,
            evaluated,
            age,
            quarantine,
            restrictions or _NO_RESTRICTIONS,
            _sorted(report_only, report_orders) if report_only else (),
            frozenset(failing) if failing else _EMPTY,
            request.now,
            request.app,
        ),
    )


def _sorted(reasons: list[Reason], orders: list[_Order] | None) -> tuple[Reason, ...]:
    """``reasons`` in the engine's order (stable: equal keys keep their order)."""
    if len(reasons) == 1:
        return (reasons[0],)
    if orders is None:
        return tuple(sorted(reasons, key=_reason_order))
    return tuple(map(reasons.__getitem__, sorted(range(len(reasons)), key=orders.__getitem__)))
