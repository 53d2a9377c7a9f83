"""Typed compliance checks: each policy-file check key becomes a closure over the posture.

A check is ``Callable[[Posture, RuleEnv], bool]``; ``True`` means the rule passes. A field the
device did not report (``None``) never passes: the check fails closed. Each factory also
declares which posture fields it reads, so the compiler can refuse a rule that a privacy
profile makes impossible to satisfy.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, NamedTuple

from mdm_core.policy.cel import CelCondition
from mdm_core.policy.durations import parse_duration
from mdm_core.posture.model import Posture

__all__ = [
    "RuleEnv",
    "Check",
    "CHECK_FIELDS",
    "build_check",
    "parse_version",
    "describe_check",
]


class RuleEnv(NamedTuple):
    """Per-evaluation values a check may need besides the posture."""

    platform: str
    ownership: str
    user_id: str
    groups: frozenset[str]
    now: datetime


Check = Callable[[Posture, RuleEnv], bool]

#: Posture fields each typed check reads (``cel`` reads what its expression names).
CHECK_FIELDS: dict[str, tuple[str, ...]] = {
    "storage_encrypted": ("storage_encrypted",),
    "min_os_version": ("os_version",),
    "min_security_patch_level": ("security_patch_level",),
    "passcode_min_length": ("passcode_min_length",),
    "not_jailbroken": ("jailbroken",),
    "screen_lock_max_timeout": ("screen_lock_enabled", "screen_lock_timeout_s"),
    "firewall": ("firewall_enabled",),
    "secure_boot": ("secure_boot",),
    "agent_present": ("agent_present",),
    "mdm_profile_present": ("mdm_profile_present",),
    "work_profile_present": ("work_profile_present",),
    "required_apps": ("managed_apps",),
    "forbidden_apps": ("installed_apps",),
    "vulnerable_os_builds": ("os_build",),
}

_VERSION = re.compile(r"^\s*v?([0-9]+(?:\.[0-9]+)*)")


_VERSION_MEMO: dict[str, tuple[int, ...] | None] = {}


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """Leading dotted number of a version string (``"17.4.1 (21E236)"`` -> (17, 4, 1))."""
    if text is None:
        return None
    try:
        return _VERSION_MEMO[text]
    except KeyError:
        pass
    parsed = _parse_version(text)
    if len(_VERSION_MEMO) >= 4096:
        _VERSION_MEMO.clear()
    _VERSION_MEMO[text] = parsed
    return parsed


def _parse_version(text: str) -> tuple[int, ...] | None:
    match = _VERSION.match(text)
    if match is None:
        return None
    parts = tuple(int(p) for p in match.group(1).split("."))
    while len(parts) > 1 and parts[-1] == 0:
        parts = parts[:-1]
    return parts


def _flag(field: str) -> Check:
    def check(posture: Posture, env: RuleEnv) -> bool:
        return getattr(posture, field) is True

    return check


def _not_jailbroken() -> Check:
    def check(posture: Posture, env: RuleEnv) -> bool:
        return posture.jailbroken is False

    return check


def _min_os_version(spec: dict[str, str]) -> Check:
    minimums = {platform: parse_version(v) for platform, v in spec.items()}

    def check(posture: Posture, env: RuleEnv) -> bool:
        minimum = minimums.get(env.platform)  # the enrolled platform (checked = posture's)
        if minimum is None:
            return True  # no minimum for this platform (the rule's scope says where it applies)
        have = parse_version(posture.os_version)
        return have is not None and have >= minimum

    return check


def _min_patch_level(spec: str) -> Check:
    if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", spec):
        oldest = date.fromisoformat(spec)

        def by_date(posture: Posture, env: RuleEnv) -> bool:
            level = posture.security_patch_level
            return level is not None and level >= oldest

        return by_date
    max_age = parse_duration(spec)

    def by_age(posture: Posture, env: RuleEnv) -> bool:
        level = posture.security_patch_level
        return level is not None and (env.now.date() - level) <= max_age

    return by_age


def _passcode_min_length(minimum: int) -> Check:
    def check(posture: Posture, env: RuleEnv) -> bool:
        length = posture.passcode_min_length
        return posture.passcode_set is not False and length is not None and length >= minimum

    return check


def _screen_lock(spec: str) -> Check:
    limit = parse_duration(spec).total_seconds()

    def check(posture: Posture, env: RuleEnv) -> bool:
        timeout = posture.screen_lock_timeout_s
        return posture.screen_lock_enabled is True and timeout is not None and timeout <= limit

    return check


def _required_apps(app_ids: list[str]) -> Check:
    required = frozenset(app_ids)

    def check(posture: Posture, env: RuleEnv) -> bool:
        present = {a.app_id for a in posture.managed_apps}
        if required <= present:
            return True
        present.update(a.app_id for a in posture.installed_apps)
        return required <= present

    return check


def _forbidden_apps(app_ids: list[str]) -> Check:
    forbidden = frozenset(app_ids)

    def check(posture: Posture, env: RuleEnv) -> bool:
        for installed in posture.installed_apps:
            if installed.app_id in forbidden:
                return False
        for managed in posture.managed_apps:
            if managed.app_id in forbidden:
                return False
        return True

    return check


def _vulnerable_builds(builds: list[str]) -> Check:
    vulnerable = frozenset(b.strip().lower() for b in builds)

    def check(posture: Posture, env: RuleEnv) -> bool:
        build = posture.os_build
        return build is not None and build.strip().lower() not in vulnerable

    return check


def _cel(condition: CelCondition) -> Check:
    def check(posture: Posture, env: RuleEnv) -> bool:
        return condition.evaluate(
            posture,
            platform=env.platform,
            ownership=env.ownership,
            user_id=env.user_id,
            groups=env.groups,
            now=env.now,
        )

    return check


def build_check(key: str, value: Any) -> Check:
    """The closure for check ``key`` with its (schema-validated) ``value``.

    ``cel`` takes an already compiled :class:`~mdm_core.policy.cel.CelCondition`.
    """
    if key in ("storage_encrypted",):
        return _flag("storage_encrypted")
    if key == "firewall":
        return _flag("firewall_enabled")
    if key in ("secure_boot", "agent_present", "mdm_profile_present", "work_profile_present"):
        return _flag(key)
    if key == "not_jailbroken":
        return _not_jailbroken()
    if key == "min_os_version":
        return _min_os_version(value)
    if key == "min_security_patch_level":
        return _min_patch_level(value)
    if key == "passcode_min_length":
        return _passcode_min_length(value)
    if key == "screen_lock_max_timeout":
        return _screen_lock(value)
    if key == "required_apps":
        return _required_apps(value)
    if key == "forbidden_apps":
        return _forbidden_apps(value)
    if key == "vulnerable_os_builds":
        return _vulnerable_builds(value)
    if key == "cel":
        assert isinstance(value, CelCondition)
        return _cel(value)
    raise KeyError(f"unknown check {key!r}")


def describe_check(key: str, value: Any) -> str:
    """A default human message for a failed check."""
    match key:
        case "storage_encrypted":
            return "Storage encryption is off or not reported."
        case "min_os_version":
            wanted = ", ".join(f"{p} {v}" for p, v in value.items())
            return f"The operating system is older than required ({wanted})."
        case "min_security_patch_level":
            return f"The security patch level is older than required ({value})."
        case "passcode_min_length":
            return f"A passcode of at least {value} characters is required."
        case "not_jailbroken":
            return "The device is jailbroken or rooted, or its integrity is not reported."
        case "screen_lock_max_timeout":
            return f"The screen must lock after at most {value}."
        case "firewall":
            return "The firewall is off or not reported."
        case "secure_boot":
            return "Secure boot is off or not reported."
        case "agent_present":
            return "The device agent is missing."
        case "mdm_profile_present":
            return "The MDM profile was removed."
        case "work_profile_present":
            return "The work profile is missing."
        case "required_apps":
            return f"Required apps are missing: {', '.join(value)}."
        case "forbidden_apps":
            return f"A forbidden app is installed (one of {', '.join(value)})."
        case "vulnerable_os_builds":
            return "The operating system build has a known critical vulnerability."
        case _:
            return "A custom compliance condition is not met."
