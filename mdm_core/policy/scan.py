"""Fused rule scanners: one generated function per (policy, platform, ownership).

The engine's hot loop used to call one closure per rule. Here the rules of a scope become one
function that tests the simple boolean checks inline (``posture.storage_encrypted is not
True``) and calls the closures of the others, and returns the positions of the rules that
failed. Only names of our own posture fields (from :data:`FLAG_CHECKS`, a constant table,
never text from a policy file) and integers appear in the generated source; every closure is
passed in as a variable. A CEL error counts as a failure (the engine asks the rule again for
the error text); any other exception propagates, so the engine blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mdm_core.policy.cel import CelEvaluationError
from mdm_core.policy.checks import RuleEnv
from mdm_core.policy.compiled import CompiledRule
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


def build_scanner(
    rules: Sequence[CompiledRule], scope: tuple[Platform, Ownership] | None = None
) -> Scanner:
    """A function returning the indexes (into ``rules``) of the rules that fail.

    ``scope``: the (platform, ownership) every posture it is given comes with (the enrolled
    device's), so that checks specialise on it."""
    lines = ["def scan(posture, env):", "    failed = []"]
    namespace: dict[str, object] = {"CelEvaluationError": CelEvaluationError}
    for index, rule in enumerate(rules):
        flag = FLAG_CHECKS.get(rule.check_key)
        if flag is not None:
            field, wanted = flag
            assert field in POSTURE_FIELDS and field.isidentifier()
            lines.append(f"    if posture.{field} is not {wanted!r}:")
            lines.append(f"        failed.append({index})")
            continue
        namespace[f"c{index}"] = rule.check
        lines.append("    try:")
        lines.append(f"        if not c{index}(posture, env):")
        lines.append(f"            failed.append({index})")
        lines.append("    except CelEvaluationError:")
        lines.append(f"        failed.append({index})")
    lines.append("    return failed")
    code = compile("\n".join(lines) + "\n", "<policy-scanner>", "exec")
    exec(code, namespace)  # noqa: S102 - source built from constants and ints only (see above)
    scanner = namespace["scan"]
    assert callable(scanner)
    return scanner
