"""Fused rule scanners: one generated function per (policy, platform, ownership).

The rules of a scope become one function that tests the typed checks inline and returns the
positions of the rules that failed. Inline: the boolean flags (``posture.storage_encrypted is
not True``), and, specialised on the scope's platform, the minimum OS version (a rule with no
minimum for the platform passes, so it is left out), passcode length, screen lock, patch
level, vulnerable builds and a single required app, with the parameters the closures of
:mod:`~mdm_core.policy.checks` would capture (the engine-equivalence test holds the two to
the same answers). The other app checks call their closures; a CEL condition is asked through
``CelCondition.evaluate`` (looked up at call time). A CEL error counts as a failure and is
returned as ``-1 - index``, so the engine asks the rule again for the error text only then.
Only names of our own posture fields (constant tables, never text from a policy file) and
integers appear in the generated source; every value is passed in as a variable. Any other
exception propagates, so the engine blocks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date

from mdm_core.policy.cel import CelCondition, CelEvaluationError
from mdm_core.policy.checks import RuleEnv, parse_version
from mdm_core.policy.compiled import CompiledRule
from mdm_core.policy.durations import parse_duration
from mdm_core.posture.model import POSTURE_FIELDS, Ownership, Platform, Posture

__all__ = ["Scanner", "FLAG_CHECKS", "build_scanner"]

Scanner = Callable[[Posture, RuleEnv], list[int]]

#: check key -> (posture field, the only value that passes)
FLAG_CHECKS: dict[str, tuple[str, bool]] = {
    "storage_encrypted": ("storage_encrypted", True),
    "firewall": ("firewall_enabled", True),
    "secure_boot": ("secure_boot", True),
    "agent_present": ("agent_present", True),
    "mdm_profile_present": ("mdm_profile_present", True),
    "work_profile_present": ("work_profile_present", True),
    "not_jailbroken": ("jailbroken", False),
}
_PATCH_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def build_scanner(
    rules: Sequence[CompiledRule], scope: tuple[Platform, Ownership] | None = None
) -> Scanner:
    """A function returning the indexes (into ``rules``) of the rules that fail (``-1 - i``
    for a CEL condition that raised).

    ``scope``: the (platform, ownership) of every device it is asked about (the enrolled
    device's: ``env.platform``); ``None``: unknown, no specialisation on it."""
    lines = ["def scan(posture, env):", "    failed = []"]
    namespace: dict[str, object] = {
        "CelEvaluationError": CelEvaluationError,
        "parse_version": parse_version,
    }
    for index, rule in enumerate(rules):
        a = f"a{index}"
        key, value = rule.check_key, rule.check_args
        flag = FLAG_CHECKS.get(key)
        if flag is not None:
            field, wanted = flag
            assert field in POSTURE_FIELDS and field.isidentifier()
            _fails(lines, index, f"posture.{field} is not {wanted!r}")
        elif key == "min_os_version" and scope is not None and isinstance(value, dict):
            spec = value.get(scope[0].value)
            minimum = parse_version(spec) if spec is not None else None
            if minimum is None:
                continue  # no minimum for this platform: the check passes
            namespace[a] = minimum
            lines.append("    have = parse_version(posture.os_version)")
            _fails(lines, index, f"have is None or not have >= {a}")
        elif key == "passcode_min_length" and isinstance(value, int):
            namespace[a] = value
            lines.append("    length = posture.passcode_min_length")
            _fails(
                lines,
                index,
                f"not (posture.passcode_set is not False and length is not None and length >= {a})",
            )
        elif key == "screen_lock_max_timeout" and isinstance(value, str):
            namespace[a] = parse_duration(value).total_seconds()
            lines.append("    timeout = posture.screen_lock_timeout_s")
            _fails(
                lines,
                index,
                f"not (posture.screen_lock_enabled is True and timeout is not None"
                f" and timeout <= {a})",
            )
        elif key == "vulnerable_os_builds" and isinstance(value, list | tuple):
            namespace[a] = frozenset(str(b).strip().lower() for b in value)
            lines.append("    build = posture.os_build")
            _fails(lines, index, f"build is None or build.strip().lower() in {a}")
        elif key == "min_security_patch_level" and isinstance(value, str):
            lines.append("    level = posture.security_patch_level")
            if _PATCH_DATE.fullmatch(value):
                namespace[a] = date.fromisoformat(value)
                _fails(lines, index, f"level is None or not level >= {a}")
            else:
                namespace[a] = parse_duration(value)
                _fails(lines, index, f"level is None or not (env.now.date() - level) <= {a}")
        elif key == "required_apps" and isinstance(value, list | tuple) and len(value) == 1:
            # one app (the usual case): look for it, managed apps first, without a set
            namespace[a] = value[0]
            lines += [
                "    for app in posture.managed_apps:",
                f"        if app.app_id == {a}:",
                "            break",
                "    else:",
                "        for app in posture.installed_apps:",
                f"            if app.app_id == {a}:",
                "                break",
                "        else:",
                f"            failed.append({index})",
            ]
        elif key == "cel" and isinstance(value, CelCondition):
            namespace[a] = value
            lines += [
                "    try:",
                f"        if not {a}.evaluate(posture, platform=env.platform,"
                " ownership=env.ownership, user_id=env.user_id, groups=env.groups,"
                " now=env.now):",
                f"            failed.append({index})",
                "    except CelEvaluationError:",
                f"        failed.append({-1 - index})",
            ]
        else:
            namespace[f"c{index}"] = rule.check
            _fails(lines, index, f"not c{index}(posture, env)")
    lines.append("    return failed")
    code = compile("\n".join(lines) + "\n", "<policy-scanner>", "exec")
    exec(code, namespace)  # noqa: S102 - source built from constants and ints only (see above)
    scanner = namespace["scan"]
    assert callable(scanner)
    return scanner


def _fails(lines: list[str], index: int, condition: str) -> None:
    lines.append(f"    if {condition}:")
    lines.append(f"        failed.append({index})")
