"""The compiled policy set: immutable objects the engine evaluates with no parsing.

Built once per (re)load by :mod:`mdm_core.policy.compiler`; shared read-only by every request
thread, swapped atomically by :class:`~mdm_core.policy.repository.PolicyRepository`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from mdm_core.policy.checks import Check, RuleEnv
from mdm_core.policy.model import Outcome, Severity
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
    "CompiledPolicySet",
]


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
    #: per scope, a fused function returning the indexes (into by_scope[scope]) that fail
    scanners: Mapping[tuple[Platform, Ownership], Callable[[Posture, RuleEnv], list[int]]] = field(
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


@dataclass(frozen=True, slots=True)
class PrivacyProfileDoc:
    """A privacy profile as validated here (engineer B's :mod:`mdm_core.domain.privacy` loads
    it)."""

    id: str
    ownership: Ownership
    collect: frozenset[str]
    file: str
    line: int


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
    #: compliance policies pre-filtered by (platform, ownership); groups are checked per user
    compliance_by_scope: Mapping[tuple[Platform, Ownership], tuple[CompliancePolicy, ...]] = field(
        default_factory=dict
    )

    def compliance_for(
        self, groups: frozenset[str], platform: Platform, ownership: Ownership
    ) -> list[CompliancePolicy]:
        """The compliance policies (enforced and report-only) assigned to this user/device."""
        candidates = self.compliance_by_scope.get((platform, ownership))
        if candidates is None:  # a set built without the index
            return [p for p in self.compliance if p.assign.matches(groups, platform, ownership)]
        return [
            p
            for p in candidates
            if p.assign.groups is None or not p.assign.groups.isdisjoint(groups)
        ]

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
