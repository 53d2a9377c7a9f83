"""The evaluation tables of a compiled set: everything a decision can know before it sees a
request, computed once per (re)load.

Per (platform, ownership) scope, :func:`build_tables` lists the compliance policies whose
``assign.platforms``/``assign.ownership`` admit it (set order) as :class:`ScopedPolicy`
entries (the fused scanner of the policy's rules for that scope and, per rule, the
:class:`RuleFacts` a failure needs: its messages, grace stage at elapsed zero, sort keys) and
indexes them by assigned group (:class:`ScopeTable`). Nothing here reads a request.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta

from mdm_core.policy.cel import CelCondition
from mdm_core.policy.compiled import (
    CompiledRule,
    CompliancePolicy,
    RuleFacts,
    ScopedPolicy,
    ScopeTable,
)
from mdm_core.policy.model import Outcome, ReasonCode, Severity
from mdm_core.policy.scan import build_scanner
from mdm_core.posture.model import Ownership, Platform

__all__ = ["build_tables", "rule_facts", "SEVERITY_RANK", "OUTCOME_RANKS"]

#: The engine's reason order: severity rank (a reason without severity sorts first, -1)
SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.HIGH: 1, Severity.MEDIUM: 2, Severity.LOW: 3}
#: Outcomes by rank (allow 0 .. block 3)
OUTCOME_RANKS = (Outcome.ALLOW, Outcome.WARN, Outcome.RESTRICT, Outcome.BLOCK)
_DATE_SPEC = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def build_tables(
    compliance: Sequence[CompliancePolicy],
) -> dict[tuple[Platform, Ownership], ScopeTable]:
    """One :class:`ScopeTable` per (platform, ownership), for every scope."""
    facts = {id(rule): rule_facts(rule) for policy in compliance for rule in policy.rules}
    tables = {}
    for platform in Platform:
        for ownership in Ownership:
            candidates = tuple(
                _scoped(policy, (platform, ownership), facts)
                for policy in compliance
                if (policy.assign.platforms is None or platform in policy.assign.platforms)
                and (policy.assign.ownership is None or ownership in policy.assign.ownership)
            )
            always = 0
            group_bits: dict[str, int] = {}
            for i, scoped in enumerate(candidates):
                groups = scoped.policy.assign.groups
                if groups is None:
                    always |= 1 << i
                    continue
                for name in groups:
                    group_bits[name] = group_bits.get(name, 0) | 1 << i
            tables[(platform, ownership)] = ScopeTable(
                candidates=candidates,
                always=always,
                group_bits=group_bits,
                group_names=frozenset(group_bits),
            )
    return tables


def _scoped(
    policy: CompliancePolicy,
    scope: tuple[Platform, Ownership],
    facts: dict[int, RuleFacts],
) -> ScopedPolicy:
    rules = policy.by_scope.get(scope)
    if rules is None:
        rules = tuple(r for r in policy.rules if r.applies(*scope))
    reads_now = by_date = False
    for rule in rules:
        if rule.check_key == "cel":
            args = rule.check_args
            reads_now = reads_now or not isinstance(args, CelCondition) or args.uses_now
        elif rule.check_key == "min_security_patch_level":
            spec = rule.check_args
            by_date = by_date or not (isinstance(spec, str) and _DATE_SPEC.fullmatch(spec))
    return ScopedPolicy(
        policy=policy,
        id=policy.id,
        enforce=policy.enforce,
        max_posture_age=policy.max_posture_age,
        scanner=build_scanner(rules, scope) if rules else None,
        facts=tuple(facts[id(rule)] for rule in rules),
        reads_now=reads_now,
        by_date=by_date,
    )


def rule_facts(rule: CompiledRule) -> RuleFacts:
    """What the engine needs when ``rule`` fails (see :class:`RuleFacts`)."""
    is_cel = rule.check_key == "cel"
    one_field = rule.fields[0] if len(rule.fields) == 1 and not is_cel else None
    unreported = rule.message
    if one_field is not None:
        unreported += f" This device did not report: {one_field.replace('_', ' ')}."
    if rule.critical:
        stage0, following0 = Outcome.BLOCK, None
    else:
        stage0, following0 = rule.stage(timedelta(0))
    severity_rank = SEVERITY_RANK[rule.severity]
    code = ReasonCode.RULE_FAILED.value
    return RuleFacts(
        rule=rule,
        key=rule.key,
        critical=rule.critical,
        is_cel=is_cel,
        fields=rule.fields,
        one_field=one_field,
        message=rule.message,
        message_unreported=unreported,
        stage0=stage0,
        following0=following0,
        grace=rule.grace,
        order=tuple(
            (-rank, severity_rank, rule.policy_id, rule.id, code)
            for rank in range(len(OUTCOME_RANKS))
        ),
        policy_id=rule.policy_id,
        rule_id=rule.id,
        severity=rule.severity,
        remediation=rule.remediation,
    )
