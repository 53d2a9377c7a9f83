"""From validated-shape documents to a :class:`CompiledPolicySet`, checking meaning.

Checks beyond the schema, each reported as ``file:line: reason``: exactly one check per rule,
CEL that parses and type-checks on a sample posture, valid dates, grace timelines that only
get stricter (and none on critical rules), ids unique across the set, group references known
to the directory mirror (when one is given), and conflicts: one typed check twice in a policy,
an app both required and forbidden (or installed by configuration and forbidden), one app in
two access policies, two privacy profiles or offboarding policies for the same scope, a BYOD
offboarding that would touch personal data, and a rule that reads a posture field the privacy
profile of its ownership does not collect (it could never pass).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from mdm_core.policy.cel import CelCompileError, compile_condition
from mdm_core.policy.checks import CHECK_FIELDS, build_check, describe_check
from mdm_core.policy.compiled import (
    AccessPolicy,
    AppAccess,
    Assignment,
    CompiledPolicySet,
    CompiledRule,
    CompliancePolicy,
    ConfigurationPolicy,
    OffboardingAction,
    OffboardingPolicy,
    PrivacyProfileDoc,
)
from mdm_core.policy.durations import parse_duration
from mdm_core.policy.errors import Problem
from mdm_core.policy.index import build_tables
from mdm_core.policy.model import Outcome, Severity
from mdm_core.policy.schema import CHECK_KEYS, schema_problems
from mdm_core.policy.source import PathKey, SourceDocument
from mdm_core.posture.model import Ownership, Platform

__all__ = ["compile_documents", "DEFAULT_MAX_POSTURE_AGE", "SENSITIVITY_DEFAULTS"]

DEFAULT_MAX_POSTURE_AGE = timedelta(hours=1)

#: What ``warn`` and ``restrict`` allow for an app whose access policy does not say.
SENSITIVITY_DEFAULTS: dict[str, tuple[AppAccess, AppAccess]] = {
    "low": (AppAccess.ALLOW, AppAccess.ALLOW),
    "medium": (AppAccess.ALLOW, AppAccess.DENY),
    "high": (AppAccess.ALLOW, AppAccess.DENY),
    "critical": (AppAccess.DENY, AppAccess.DENY),
}
_STAGES = (Outcome.WARN, Outcome.RESTRICT, Outcome.BLOCK)


@dataclass
class _Ctx:
    known_groups: frozenset[str] | None
    problems: list[Problem] = field(default_factory=list)
    ids: dict[str, tuple[str, int]] = field(default_factory=dict)

    def add(self, doc: SourceDocument, path: PathKey, reason: str, *, key: bool = False) -> None:
        self.problems.append(doc.problem(path, reason, key=key))


def compile_documents(
    documents: list[SourceDocument],
    *,
    known_groups: Collection[str] | None = None,
    fingerprint: str = "",
    files: tuple[str, ...] = (),
    now: datetime,
) -> tuple[CompiledPolicySet | None, list[Problem]]:
    """Compile every document; returns ``(set, [])`` or ``(None, problems)``."""
    ctx = _Ctx(frozenset(known_groups) if known_groups is not None else None)
    compliance: list[tuple[SourceDocument, CompliancePolicy]] = []
    access: list[tuple[SourceDocument, AccessPolicy]] = []
    configuration: list[tuple[SourceDocument, ConfigurationPolicy]] = []
    offboarding: list[tuple[SourceDocument, OffboardingPolicy]] = []
    privacy: list[tuple[SourceDocument, PrivacyProfileDoc]] = []
    for doc in documents:
        shape = schema_problems(doc)
        if shape:
            ctx.problems.extend(shape)
            continue
        data = doc.data
        _register_id(ctx, doc, data["id"])
        kind = data["kind"]
        if kind == "CompliancePolicy":
            policy = _compliance(ctx, doc, data)
            if policy is not None:
                compliance.append((doc, policy))
        elif kind == "AccessPolicy":
            access.append((doc, _access(doc, data)))
        elif kind == "ConfigurationPolicy":
            configuration.append((doc, _configuration(ctx, doc, data)))
        elif kind == "OffboardingPolicy":
            offboarding.append((doc, _offboarding(ctx, doc, data)))
        elif kind == "PrivacyProfile":
            privacy.append((doc, _privacy(doc, data)))
    _conflicts(ctx, compliance, access, configuration, offboarding, privacy)
    if ctx.problems:
        return None, sorted(set(ctx.problems))
    access_by_app: dict[str, AccessPolicy] = {}
    for _, ap in access:
        for app in ap.apps:
            access_by_app[app] = ap
    compiled = CompiledPolicySet(
        compliance=tuple(p for _, p in compliance),
        access=access_by_app,
        access_policies=tuple(p for _, p in access),
        configuration=tuple(p for _, p in configuration),
        offboarding=tuple(p for _, p in offboarding),
        privacy={p.ownership: p for _, p in privacy},
        fingerprint=fingerprint,
        files=files,
        loaded_at=now,
        scopes=build_tables([p for _, p in compliance]),
    )
    return compiled, []


def _register_id(ctx: _Ctx, doc: SourceDocument, policy_id: str) -> None:
    if policy_id in ctx.ids:
        first_file, first_line = ctx.ids[policy_id]
        ctx.add(
            doc, ("id",), f"duplicate id {policy_id!r} (first defined at {first_file}:{first_line})"
        )
    else:
        ctx.ids[policy_id] = (doc.file, doc.line_of(("id",)))


def _assignment(ctx: _Ctx, doc: SourceDocument, data: dict[str, Any] | None) -> Assignment:
    if not data:
        return Assignment()
    groups = data.get("groups")
    if groups is not None and ctx.known_groups is not None:
        for i, name in enumerate(groups):
            if name not in ctx.known_groups:
                ctx.add(
                    doc,
                    ("assign", "groups", i),
                    f"assign.groups[{i}]: unknown group {name!r} (not in the directory mirror)",
                )
    platforms = data.get("platforms")
    ownership = data.get("ownership")
    return Assignment(
        groups=frozenset(groups) if groups is not None else None,
        platforms=frozenset(Platform(p) for p in platforms) if platforms is not None else None,
        ownership=frozenset(Ownership(o) for o in ownership) if ownership is not None else None,
    )


def _compliance(ctx: _Ctx, doc: SourceDocument, data: dict[str, Any]) -> CompliancePolicy | None:
    policy_id: str = data["id"]
    assign = _assignment(ctx, doc, data.get("assign"))
    max_age = parse_duration(data.get("max_posture_age", "1h"))
    if max_age <= timedelta(0):
        ctx.add(doc, ("max_posture_age",), "max_posture_age must be longer than 0")
    rules: list[CompiledRule] = []
    seen_rules: dict[str, int] = {}
    before = len(ctx.problems)
    for i, rule_data in enumerate(data["rules"]):
        path: PathKey = ("rules", i)
        rule_id = rule_data["id"]
        if rule_id in seen_rules:
            ctx.add(
                doc,
                (*path, "id"),
                f"rules[{i}]: duplicate rule id {rule_id!r} (first at line {seen_rules[rule_id]})",
            )
            continue
        seen_rules[rule_id] = doc.line_of((*path, "id"))
        rule = _rule(ctx, doc, path, policy_id, rule_data)
        if rule is not None:
            rules.append(rule)
    if len(ctx.problems) > before:
        return None
    by_scope = {
        (platform, ownership): tuple(r for r in rules if r.applies(platform, ownership))
        for platform in Platform
        for ownership in Ownership
    }
    return CompliancePolicy(
        id=policy_id,
        enforce=data.get("mode", "enforce") == "enforce",
        assign=assign,
        max_posture_age=max_age,
        rules=tuple(rules),
        file=doc.file,
        line=doc.line,
        by_scope=by_scope,
    )


def _rule(
    ctx: _Ctx, doc: SourceDocument, path: PathKey, policy_id: str, data: dict[str, Any]
) -> CompiledRule | None:
    index = path[-1]
    checks = [k for k in CHECK_KEYS if k in data]
    if len(checks) != 1:
        found = ", ".join(checks) if checks else "none"
        ctx.add(
            doc,
            path,
            f"rules[{index}]: a rule has exactly one check (one of {', '.join(CHECK_KEYS)}); "
            f"found {found}",
        )
        return None
    key = checks[0]
    value = data[key]
    fields: tuple[str, ...] = CHECK_FIELDS.get(key, ())
    if key == "cel":
        try:
            condition = compile_condition(value)
        except CelCompileError as exc:
            ctx.add(doc, (*path, "cel"), f"rules[{index}].cel: {exc}")
            return None
        value = condition
        fields = condition.posture_fields
    if key == "min_security_patch_level" and "-" in value:
        try:
            date.fromisoformat(value)
        except ValueError:
            ctx.add(doc, (*path, key), f"rules[{index}].{key}: {value!r} is not a real date")
            return None
    severity = Severity(data["severity"])
    grace = _grace(ctx, doc, path, severity, data.get("grace"))
    if grace is None:
        return None
    platforms = data.get("platforms")
    ownership = data.get("ownership")
    return CompiledRule(
        policy_id=policy_id,
        id=data["id"],
        severity=severity,
        check_key=key,
        check_args=value,
        check=build_check(key, value),
        message=data.get("message") or describe_check(key, data[key]),
        remediation=data["remediation"],
        grace=grace,
        platforms=frozenset(Platform(p) for p in platforms) if platforms else None,
        ownership=frozenset(Ownership(o) for o in ownership) if ownership else None,
        fields=fields,
        file=doc.file,
        line=doc.line_of(path),
        key=(policy_id, data["id"]),
        critical=severity is Severity.CRITICAL,
    )


def _grace(
    ctx: _Ctx,
    doc: SourceDocument,
    path: PathKey,
    severity: Severity,
    data: dict[str, str] | None,
) -> tuple[tuple[timedelta, Outcome], ...] | None:
    index = path[-1]
    if data is None:
        return ()
    if severity is Severity.CRITICAL:
        ctx.add(
            doc,
            (*path, "grace"),
            f"rules[{index}].grace: critical rules block at once and quarantine; "
            "they cannot have a grace timeline (lower the severity or drop the grace)",
        )
        return None
    stages = [(parse_duration(data[s.value]), s) for s in _STAGES if s.value in data]
    if stages[0][0] != timedelta(0):
        first = stages[0][1].value
        ctx.add(
            doc,
            (*path, "grace", first),
            f"rules[{index}].grace.{first}: the first stage must start at 0d "
            "(a failing rule always has an effect at once)",
        )
        return None
    for (earlier, earlier_stage), (later, later_stage) in zip(stages, stages[1:], strict=False):
        if later <= earlier:
            ctx.add(
                doc,
                (*path, "grace", later_stage.value),
                f"rules[{index}].grace.{later_stage.value}: must come after "
                f"{earlier_stage.value} (stages only get stricter over time)",
            )
            return None
    return tuple(stages)


def _access(doc: SourceDocument, data: dict[str, Any]) -> AccessPolicy:
    apps: set[str] = set()
    for app in data["applications"]:
        apps.update(app[k] for k in ("client_id", "entity_id") if k in app)
    sensitivity = data["sensitivity"]
    warn_default, restrict_default = SENSITIVITY_DEFAULTS[sensitivity]
    outcomes = data.get("outcomes") or {}
    warn, warn_scopes = _app_access(outcomes.get("warn"), warn_default)
    restrict, restrict_scopes = _app_access(outcomes.get("restrict"), restrict_default)
    return AccessPolicy(
        id=data["id"],
        apps=frozenset(apps),
        sensitivity=sensitivity,
        warn=warn,
        warn_scopes=warn_scopes,
        restrict=restrict,
        restrict_scopes=restrict_scopes,
        file=doc.file,
        line=doc.line,
    )


def _app_access(value: Any, default: AppAccess) -> tuple[AppAccess, tuple[str, ...] | None]:
    if value is None:
        return default, None
    if isinstance(value, dict):
        return AppAccess.SCOPES, tuple(value["scopes"])
    return AppAccess(value), None


def _configuration(ctx: _Ctx, doc: SourceDocument, data: dict[str, Any]) -> ConfigurationPolicy:
    apps = data.get("apps") or {}
    certs = data.get("certificates") or {}
    policy = ConfigurationPolicy(
        id=data["id"],
        assign=_assignment(ctx, doc, data.get("assign")),
        install_apps=frozenset(apps.get("install", ())),
        remove_apps=frozenset(apps.get("remove", ())),
        install_certificates=frozenset(certs.get("install", ())),
        remove_certificates=frozenset(certs.get("remove", ())),
        file=doc.file,
        line=doc.line,
    )
    for what, install, remove in (
        ("apps", policy.install_apps, policy.remove_apps),
        ("certificates", policy.install_certificates, policy.remove_certificates),
    ):
        both = sorted(install & remove)
        if both:
            ctx.add(
                doc,
                (what, "remove"),
                f"{what}: {', '.join(both)} both installed and removed by the same policy",
            )
    return policy


def _offboarding(ctx: _Ctx, doc: SourceDocument, data: dict[str, Any]) -> OffboardingPolicy:
    actions = {Ownership(o): OffboardingAction(a) for o, a in data["actions"].items()}
    byod = actions.get(Ownership.BYOD)
    if byod is not None and byod is not OffboardingAction.SELECTIVE_WIPE:
        ctx.add(
            doc,
            ("actions", "byod"),
            f"actions.byod: {byod.value} would touch personal data; BYOD devices only get "
            "selective_wipe",
        )
    return OffboardingPolicy(
        id=data["id"],
        assign=_assignment(ctx, doc, data.get("assign")),
        actions=actions,
        file=doc.file,
        line=doc.line,
        two_person_rule=bool(data.get("two_person_rule", False)),
    )


def _privacy(doc: SourceDocument, data: dict[str, Any]) -> PrivacyProfileDoc:
    return PrivacyProfileDoc(
        id=data["id"],
        ownership=Ownership(data["ownership"]),
        collect=frozenset(data["collect"]),
        file=doc.file,
        line=doc.line,
    )


def _conflicts(
    ctx: _Ctx,
    compliance: list[tuple[SourceDocument, CompliancePolicy]],
    access: list[tuple[SourceDocument, AccessPolicy]],
    configuration: list[tuple[SourceDocument, ConfigurationPolicy]],
    offboarding: list[tuple[SourceDocument, OffboardingPolicy]],
    privacy: list[tuple[SourceDocument, PrivacyProfileDoc]],
) -> None:
    _repeated_checks(ctx, compliance)
    _required_vs_forbidden(ctx, compliance, configuration)
    seen_apps: dict[str, AccessPolicy] = {}
    for doc, ap in access:
        for app in sorted(ap.apps):
            if app in seen_apps:
                first = seen_apps[app]
                ctx.add(
                    doc,
                    ("applications",),
                    f"conflict: application {app!r} is already governed by access policy "
                    f"{first.id!r} ({first.file}:{first.line})",
                )
            else:
                seen_apps[app] = ap
    seen_privacy: dict[Ownership, PrivacyProfileDoc] = {}
    for doc, profile in privacy:
        if profile.ownership in seen_privacy:
            first_p = seen_privacy[profile.ownership]
            ctx.add(
                doc,
                ("ownership",),
                f"conflict: a privacy profile for {profile.ownership.value} already exists "
                f"({first_p.id!r} at {first_p.file}:{first_p.line})",
            )
        else:
            seen_privacy[profile.ownership] = profile
    for i, (doc_a, off_a) in enumerate(offboarding):
        for _doc_b, off_b in offboarding[:i]:
            same_groups = off_a.assign.groups == off_b.assign.groups
            shared = set(off_a.actions) & set(off_b.actions)
            if same_groups and shared:
                ctx.add(
                    doc_a,
                    ("actions",),
                    f"conflict: offboarding policy {off_b.id!r} ({off_b.file}:{off_b.line}) "
                    f"already decides {', '.join(sorted(o.value for o in shared))} "
                    "for the same groups",
                )
    _privacy_blind_rules(ctx, compliance, seen_privacy)


def _repeated_checks(ctx: _Ctx, compliance: list[tuple[SourceDocument, CompliancePolicy]]) -> None:
    repeatable = {"cel", "required_apps", "forbidden_apps", "vulnerable_os_builds"}
    for doc, policy in compliance:
        seen: list[CompiledRule] = []
        for index, rule in enumerate(policy.rules):
            if rule.check_key in repeatable:
                continue
            for earlier in seen:
                if earlier.check_key == rule.check_key and _scopes_overlap(earlier, rule):
                    ctx.add(
                        doc,
                        ("rules", index, rule.check_key),
                        f"conflict: rule {rule.id!r} repeats check {rule.check_key} of rule "
                        f"{earlier.id!r} (line {earlier.line}) for an overlapping scope",
                        key=True,
                    )
                    break
            seen.append(rule)


def _scopes_overlap(a: CompiledRule, b: CompiledRule) -> bool:
    return Assignment(None, a.platforms, a.ownership).overlaps(
        Assignment(None, b.platforms, b.ownership)
    )


def _rule_scope(policy: CompliancePolicy, rule: CompiledRule) -> list[tuple[Platform, Ownership]]:
    return [
        scope
        for scope, rules in policy.by_scope.items()
        if rule in rules
        and (policy.assign.platforms is None or scope[0] in policy.assign.platforms)
        and (policy.assign.ownership is None or scope[1] in policy.assign.ownership)
    ]


def _required_vs_forbidden(
    ctx: _Ctx,
    compliance: list[tuple[SourceDocument, CompliancePolicy]],
    configuration: list[tuple[SourceDocument, ConfigurationPolicy]],
) -> None:
    forbidden: list[tuple[set[tuple[Platform, Ownership]], str, CompiledRule, frozenset[str]]] = []
    for _doc, policy in compliance:
        if not policy.enforce:
            continue
        for rule in policy.rules:
            if rule.check_key == "forbidden_apps":
                apps = _rule_apps(rule)
                forbidden.append((set(_rule_scope(policy, rule)), policy.id, rule, apps))
    if not forbidden:
        return
    for doc, policy in compliance:
        if not policy.enforce:
            continue
        for index, rule in enumerate(policy.rules):
            if rule.check_key != "required_apps":
                continue
            scope = set(_rule_scope(policy, rule))
            for f_scope, f_policy, f_rule, f_apps in forbidden:
                both = sorted(_rule_apps(rule) & f_apps)
                if both and scope & f_scope:
                    ctx.add(
                        doc,
                        ("rules", index, "required_apps"),
                        f"conflict: {', '.join(both)} required here and forbidden by rule "
                        f"{f_policy}/{f_rule.id} ({f_rule.file}:{f_rule.line})",
                        key=True,
                    )
    for doc, conf in configuration:
        conf_scope = {
            (p, o)
            for p in Platform
            for o in Ownership
            if conf.assign.platforms is None or p in conf.assign.platforms
            if conf.assign.ownership is None or o in conf.assign.ownership
        }
        for f_scope, f_policy, f_rule, f_apps in forbidden:
            both = sorted(conf.install_apps & f_apps)
            if both and conf_scope & f_scope:
                ctx.add(
                    doc,
                    ("apps", "install"),
                    f"conflict: installs {', '.join(both)}, forbidden by rule "
                    f"{f_policy}/{f_rule.id} ({f_rule.file}:{f_rule.line})",
                    key=True,
                )


def _rule_apps(rule: CompiledRule) -> frozenset[str]:
    args = rule.check_args
    return frozenset(str(a) for a in args) if isinstance(args, list | tuple) else frozenset()


def _privacy_blind_rules(
    ctx: _Ctx,
    compliance: list[tuple[SourceDocument, CompliancePolicy]],
    profiles: dict[Ownership, PrivacyProfileDoc],
) -> None:
    if not profiles:
        return
    for doc, policy in compliance:
        for index, rule in enumerate(policy.rules):
            owners = {o for _, o in _rule_scope(policy, rule)}
            for ownership in sorted(owners):
                profile = profiles.get(ownership)
                if profile is None:
                    continue
                missing = [f for f in rule.fields if f not in profile.collect]
                if missing:
                    ctx.add(
                        doc,
                        ("rules", index),
                        f"conflict: rule {rule.id!r} reads {', '.join(missing)}, which privacy "
                        f"profile {profile.id!r} ({ownership.value}) does not collect; it could "
                        "never pass (narrow the rule's ownership)",
                    )
