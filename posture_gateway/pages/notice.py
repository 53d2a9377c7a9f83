"""The transparency notice as a page: built from the privacy profile and the offboarding
policy, so what the page promises is what the server enforces.

:func:`build_notice` returns what :file:`templates/pages/privacy.html` shows: what is
collected (the profile's exact field list, with labels), what the organisation can see and
cannot see (the admin's words from the profile), and what it can and cannot do to the device
(from the commands the MDM has and the offboarding action for this ownership). The agent
keeps reading the same profile as JSON at ``/mdm/v1/privacy-notice``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mdm_core.domain.privacy import PrivacyProfile
from mdm_core.policy.compiled import OffboardingAction
from mdm_core.posture.model import Ownership

__all__ = ["Notice", "build_notice"]

_LEAVING = {
    OffboardingAction.SELECTIVE_WIPE: "remove the work apps, work accounts and their data",
    OffboardingAction.FULL_WIPE: "erase the whole device",
    OffboardingAction.LOCK_AND_RETIRE: "lock the device and take it out of management",
}


@dataclass(frozen=True)
class Notice:
    profile_id: str
    ownership: str
    description: str | None
    collected: tuple[tuple[str, str], ...]  # (field, label)
    can_see: tuple[str, ...]
    cannot_see: tuple[str, ...]
    can_do: tuple[str, ...]
    cannot_do: tuple[str, ...]


def build_notice(profile: PrivacyProfile, leaving: Iterable[OffboardingAction]) -> Notice:
    """The notice for ``profile``; ``leaving``: the offboarding actions configured for its
    ownership (several policies may target different groups)."""
    actions = sorted(set(leaving), key=lambda a: a.value)
    personal = profile.ownership is Ownership.BYOD
    can_do = [
        "Check the security state listed above each time the device checks in.",
        "Refuse, limit or warn about sign-ins to work apps while a check fails.",
        "Install, update and remove the work apps and settings it manages.",
    ]
    for action in actions:
        can_do.append(f"When you leave or the device is lost: {_LEAVING[action]}.")
    cannot_do = ["Read anything that is not in the list of what is collected."]
    if personal:
        if OffboardingAction.FULL_WIPE not in actions:
            cannot_do.append("Erase the whole device, or touch your personal apps and data.")
        if OffboardingAction.LOCK_AND_RETIRE not in actions:
            cannot_do.append("Lock you out of the device.")
        cannot_do.append("See or remove your personal apps, photos, files or accounts.")
    cannot_do.append("Turn on the camera or microphone, or track where the device is.")
    return Notice(
        profile_id=profile.id,
        ownership=profile.ownership.value,
        description=profile.description,
        collected=tuple(
            (str(c["field"]), str(c["label"])) for c in profile.notice_document()["collected"]
        ),
        can_see=tuple(profile.notice.can_see),
        cannot_see=tuple(profile.notice.cannot_see),
        can_do=tuple(can_do),
        cannot_do=tuple(cannot_do),
    )
