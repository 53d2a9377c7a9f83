"""What the remediation page shows: each failed check beside its own fix, split into what the
person can fix and what needs IT.

A reason is the user's to fix when a step on the device fixes it (a failed compliance rule,
stale or missing posture, a device not enrolled yet). It needs IT when only an administrator
can change it: the account is unknown or disabled (``user_unknown``, ``user_inactive``), the
device is quarantined, retired, wiped, someone else's or awaiting verification, a device proof
failed (a key or certificate problem, possibly an attack), or the gateway itself cannot
decide. Unknown codes need IT (fail safe: never tell a person to fix what they cannot).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mdm_core.access.decision import Reason

__all__ = ["Check", "Remediation", "USER_FIXABLE", "build_remediation"]

#: Reason codes a person fixes on the device.
USER_FIXABLE = frozenset({"rule_failed", "posture_stale", "posture_missing", "device_unknown"})

_DEFAULT_FIX = {
    "posture_stale": "Open the Posture agent and let it check in (it must be running), "
    "then check again.",
    "posture_missing": "Open the Posture agent and let it check in, then check again.",
    "device_unknown": "Enroll this device and keep the Posture agent running, then check again.",
}
_IT_NOTE = {
    "user_unknown": "Your account is not known to this service yet. IT must add it.",
    "user_inactive": "Your account is disabled. IT must re-enable it.",
    "device_quarantined": "The device was quarantined after a critical failure. Fix the "
    "problem, then IT must re-enroll it.",
    "device_not_owned": "This device is enrolled to someone else.",
    "device_retired": "This device was retired and must be enrolled again by IT.",
    "device_wiped": "This device was wiped and must be enrolled again by IT.",
    "device_pending_verification": "This device is waiting for IT to verify it.",
}


@dataclass(frozen=True)
class Check:
    code: str
    message: str
    fix: str | None
    policy_id: str | None
    critical: bool


@dataclass(frozen=True)
class Remediation:
    yours: tuple[Check, ...]
    needs_it: tuple[Check, ...]
    enroll: bool  # the device is not recognised: show the enrollment link
    steps: tuple[str, ...] = ()  # general steps of the verdict not shown beside a check

    @property
    def only_it(self) -> bool:
        return not self.yours and bool(self.needs_it)


def _check(reason: Reason, fix: str | None) -> Check:
    return Check(
        code=reason.code,
        message=reason.message,
        fix=fix,
        policy_id=reason.policy_id,
        critical=reason.severity == "critical",
    )


def build_remediation(reasons: Iterable[Reason], general: Iterable[str] = ()) -> Remediation:
    """Pair each reason with its own fix (the rule's remediation, else a default for the
    code); ``general`` steps (the verdict's remediation list) fill in for a reason without
    one only when there is exactly one such reason, so a fix is never shown beside the
    wrong check."""
    reasons = list(reasons)
    general = [g for g in general if g]
    unpaired = [r for r in reasons if not r.remediation and r.code not in _DEFAULT_FIX]
    spare = general[0] if len(unpaired) == 1 and len(general) == 1 else None
    yours: list[Check] = []
    needs_it: list[Check] = []
    for reason in reasons:
        if reason.code in USER_FIXABLE:
            fix = reason.remediation or _DEFAULT_FIX.get(reason.code) or spare
            yours.append(_check(reason, fix))
        else:
            needs_it.append(_check(reason, _IT_NOTE.get(reason.code)))
    shown = {c.fix for c in (*yours, *needs_it)}
    return Remediation(
        yours=tuple(yours),
        needs_it=tuple(needs_it),
        enroll=any(r.code == "device_unknown" for r in reasons),
        steps=tuple(g for g in dict.fromkeys(general) if g not in shown),
    )
