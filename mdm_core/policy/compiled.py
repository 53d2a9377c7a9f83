"""The compiled policy set: immutable objects the engine evaluates with no parsing.

Built once per (re)load by :mod:`mdm_core.policy.compiler`; shared read-only by every request
thread, swapped atomically by :class:`~mdm_core.policy.repository.PolicyRepository`.

Besides the policies as written, a set carries its evaluation tables (built by
:mod:`mdm_core.policy.index`): per (platform, ownership) a :class:`ScopeTable` of the
compliance policies that can apply there, each as a :class:`ScopedPolicy` (its fused scanner
and, per rule, the :class:`RuleFacts` a failure needs), indexed by assigned group so that a
decision finds its policies with a set intersection (:meth:`ScopeTable.plan`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from mdm_core.policy.checks import Check, RuleEnv
from mdm_core.policy.model import Outcome, RuleKey, Severity
from mdm_core.posture.model import Ownership, Platform, Posture

__all__ = [
    "Assignment",
    "CompiledRule",
    "CompliancePolicy",
    "AppAccess",
    "AccessPolicy",
    "ConfigurationPolicy",
    "OffboardingAction",
    "OffboardingPolicy",
    "PrivacyProfileDoc",
    "RuleFacts",
    "ScopedPolicy",
    "Plan",
    "ScopeTable",
    "PLAN_MEMO_SIZE",
    "CompiledPolicySet",
]

#: Applicable-policy plans remembered per scope (by group mask) before the memo is cleared.
PLAN_MEMO_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Assignment:
    """Who a policy applies to. ``None`` means "no restriction on this axis"."""

    groups: frozenset[str] | None = None
    platforms: frozenset[Platform] | None = None
    ownership: frozenset[Ownership] | None = None

    def matches(self, groups: frozenset[str], platform: Platform, ownership: Ownership) -> bool:
        return (
            (self.platforms is None or platform in self.platforms)
            and (self.ownership is None or ownership in self.ownership)
            and (self.groups is None or not self.groups.isdisjoint(groups))
        )

    def matches_groups(self, groups: frozenset[str]) -> bool:
        return self.groups is None or not self.groups.isdisjoint(groups)

    def overlaps(self, other: Assignment) -> bool:
        """Could one user/device be in scope of both (group overlap is assumed possible)?"""

        def axis(a: frozenset[object] | None, b: frozenset[object] | None) -> bool:
            return a is None or b is None or not a.isdisjoint(b)

        return axis(self.platforms, other.platforms) and axis(self.ownership, other.ownership)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    policy_id: str
    id: str
    severity: Severity
    check_key: str
    check_args: object  # the check's value as written (a CEL condition for `cel`)
    check: Check
    message: str
    remediation: str
    #: grace stages sorted by threshold: (time since first failure, outcome from then on).
    #: Empty: the rule blocks at once (always so for critical rules).
    grace: tuple[tuple[timedelta, Outcome], ...]
    platforms: frozenset[Platform] | None
    ownership: frozenset[Ownership] | None
    fields: tuple[str, ...]
    file: str
    line: int
    key: tuple[str, str] = ("", "")  # (policy id, rule id), set by the compiler

    critical: bool = False  # severity is critical (stored: read on the hot path)

    def applies(self, platform: Platform, ownership: Ownership) -> bool:
        return (self.platforms is None or platform in self.platforms) and (
            self.ownership is None or ownership in self.ownership
        )

    def stage(self, elapsed: timedelta) -> tuple[Outcome, timedelta | None]:
        """Outcome after failing for ``elapsed``, and when (since first failure) it escalates."""
        if not self.grace:
            return Outcome.BLOCK, None
        current = Outcome.BLOCK
        following: timedelta | None = None
        for threshold, outcome in self.grace:
            if elapsed >= threshold:
                current = outcome
            else:
                following = threshold
                break
        return current, following


@dataclass(frozen=True, slots=True)
class CompliancePolicy:
    id: str
    enforce: bool  # False: report-only
    assign: Assignment
    max_posture_age: timedelta
    rules: tuple[CompiledRule, ...]
    file: str
    line: int
    #: rules pre-filtered by (platform, ownership), computed at compile time
    by_scope: Mapping[tuple[Platform, Ownership], tuple[CompiledRule, ...]] = field(
        default_factory=dict
    )


class AppAccess(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    SCOPES = "scopes"


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    id: str
    apps: frozenset[str]  # OIDC client ids and SAML entity ids
    sensitivity: str  # low | medium | high | critical
    warn: AppAccess
    warn_scopes: tuple[str, ...] | None
    restrict: AppAccess
    restrict_scopes: tuple[str, ...] | None
    file: str
    line: int


@dataclass(frozen=True, slots=True)
class ConfigurationPolicy:
    id: str
    assign: Assignment
    install_apps: frozenset[str]
    remove_apps: frozenset[str]
    install_certificates: frozenset[str]
    remove_certificates: frozenset[str]
    file: str
    line: int


class OffboardingAction(StrEnum):
    SELECTIVE_WIPE = "selective_wipe"
    FULL_WIPE = "full_wipe"
    LOCK_AND_RETIRE = "lock_and_retire"


@dataclass(frozen=True, slots=True)
class OffboardingPolicy:
    id: str
    assign: Assignment
    actions: Mapping[Ownership, OffboardingAction]
    file: str
    line: int
    #: A full wipe under this policy needs a second, different admin's approval.
    two_person_rule: bool = False


@dataclass(frozen=True, slots=True)
class PrivacyProfileDoc:
    """A privacy profile as validated here (engineer B's :mod:`mdm_core.domain.privacy` loads
    it)."""

    id: str
    ownership: Ownership
    collect: frozenset[str]
    file: str
    line: int


class RuleFacts(NamedTuple):
    """What the engine needs when one rule fails, computed once at compile time (a tuple:
    the engine unpacks it in one step)."""

    rule: CompiledRule
    key: RuleKey
    critical: bool
    is_cel: bool
    fields: tuple[str, ...]
    #: the one posture field a typed check reads (``None``: several, or a CEL condition)
    one_field: str | None
    message: str
    #: ``message`` plus the "did not report" sentence for ``one_field``
    message_unreported: str
    #: the outcome at elapsed zero (no recorded first failure, or one in the future) and
    #: when, counted from the first failure, that stage escalates
    stage0: Outcome
    following0: timedelta | None
    grace: tuple[tuple[timedelta, Outcome], ...]
    #: the engine's sort key of this rule's reason, by outcome rank (allow .. block)
    order: tuple[tuple[int, int, str, str, str], ...]
    policy_id: str
    rule_id: str
    severity: Severity
    remediation: str


class ScopedPolicy(NamedTuple):
    """One compliance policy as evaluated in one (platform, ownership) scope."""

    policy: CompliancePolicy
    id: str
    enforce: bool
    max_posture_age: timedelta
    #: the fused scanner of ``policy.by_scope[scope]`` (``None``: no rule applies here); it
    #: returns indexes into ``facts``
    scanner: Callable[[Posture, RuleEnv], list[int]] | None
    facts: tuple[RuleFacts, ...]
    #: a CEL condition of this scope reads ``now`` (the decision cache never caches it)
    reads_now: bool
    #: a ``min_security_patch_level`` of this scope is an age (valid until midnight)
    by_date: bool


class Plan(NamedTuple):
    """The compliance policies that apply to one decision, in set order, and what follows
    from them alone."""

    policies: tuple[ScopedPolicy, ...]
    compliance: tuple[CompliancePolicy, ...]
    ids: tuple[str, ...]
    any_enforced: bool
    #: the smallest ``max_posture_age`` (``None``: no policy applies)
    min_age: timedelta | None
    reads_now: bool
    by_date: bool


@dataclass(frozen=True, slots=True)
class ScopeTable:
    """The compliance policies of one (platform, ownership), indexed by assigned group.

    Bit ``i`` of a mask stands for ``candidates[i]``; ``always`` has the bits of the
    policies assigned to everyone, ``group_bits[g]`` those of the policies assigning group
    ``g``. A decision's mask is ``always`` or-ed with the bits of the user's groups that any
    policy names (one set intersection), and its :class:`Plan` is remembered by mask.
    """

    candidates: tuple[ScopedPolicy, ...]
    always: int
    group_bits: Mapping[str, int]
    group_names: frozenset[str]
    plans: dict[int, Plan] = field(default_factory=dict, compare=False, repr=False)

    def plan(self, groups: frozenset[str]) -> Plan:
        """The policies assigned to a user in ``groups`` (set order)."""
        mask = self.always
        if self.group_names:
            bits = self.group_bits
            for name in groups & self.group_names:
                mask |= bits[name]
        plans = self.plans
        found = plans.get(mask)
        if found is None:
            found = self._build(mask)
            if len(plans) >= PLAN_MEMO_SIZE:
                plans.clear()
            plans[mask] = found
        return found

    def _build(self, mask: int) -> Plan:
        candidates = self.candidates
        chosen: list[ScopedPolicy] = []
        while mask:  # lowest bit first: set order
            low = mask & -mask
            chosen.append(candidates[low.bit_length() - 1])
            mask ^= low
        ids: list[str] = []
        compliance: list[CompliancePolicy] = []
        any_enforced = reads_now = by_date = False
        min_age: timedelta | None = None
        for scoped in chosen:
            ids.append(scoped.id)
            compliance.append(scoped.policy)
            any_enforced = any_enforced or scoped.enforce
            reads_now = reads_now or scoped.reads_now
            by_date = by_date or scoped.by_date
            if min_age is None or scoped.max_posture_age < min_age:
                min_age = scoped.max_posture_age
        return Plan(
            tuple(chosen), tuple(compliance), tuple(ids), any_enforced, min_age, reads_now, by_date
        )


@dataclass(frozen=True, slots=True)
class CompiledPolicySet:
    """Everything loaded from one policy directory, validated and compiled."""

    compliance: tuple[CompliancePolicy, ...]
    access: Mapping[str, AccessPolicy]  # app id -> policy
    access_policies: tuple[AccessPolicy, ...]
    configuration: tuple[ConfigurationPolicy, ...]
    offboarding: tuple[OffboardingPolicy, ...]
    privacy: Mapping[Ownership, PrivacyProfileDoc]
    fingerprint: str  # sha256 over the files' bytes: what exactly is in force
    files: tuple[str, ...]
    loaded_at: datetime
    #: the evaluation tables, one per (platform, ownership) (see :class:`ScopeTable`);
    #: empty only in a set with no compliance policy
    scopes: Mapping[tuple[Platform, Ownership], ScopeTable] = field(default_factory=dict)

    def compliance_for(
        self, groups: frozenset[str], platform: Platform, ownership: Ownership
    ) -> list[CompliancePolicy]:
        """The compliance policies (enforced and report-only) assigned to this user/device."""
        table = self.scopes.get((platform, ownership))
        if table is None:  # a set built without the tables
            return [p for p in self.compliance if p.assign.matches(groups, platform, ownership)]
        return list(table.plan(groups).compliance)

    @property
    def policy_ids(self) -> tuple[str, ...]:
        ids: list[str] = [p.id for p in self.compliance]
        ids += [p.id for p in self.access_policies]
        ids += [p.id for p in self.configuration]
        ids += [p.id for p in self.offboarding]
        ids += [p.id for p in self.privacy.values()]
        return tuple(ids)

    def rule_count(self) -> int:
        return sum(len(p.rules) for p in self.compliance)

    @staticmethod
    def empty(now: datetime) -> CompiledPolicySet:
        """A set with nothing in it: every evaluation against it blocks."""
        return CompiledPolicySet((), {}, (), (), (), {}, "", (), now)
