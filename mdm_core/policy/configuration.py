"""Desired device configuration from ConfigurationPolicy documents (the model, not commands).

:func:`desired_configuration` computes, for a user's effective groups on a device of a given
platform and ownership, which apps and certificates should be on it and which must be
removed. Explicit removal wins over installation when two policies disagree at run time (the
compiler already refuses a single policy that does both). Command generation (diffing this
against what the device reports, and queueing installs and removals) belongs to the MDM
command layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mdm_core.policy.compiled import CompiledPolicySet, OffboardingPolicy
from mdm_core.posture.model import Ownership, Platform

__all__ = [
    "DesiredConfiguration",
    "desired_configuration",
    "offboarding_action",
    "offboarding_policy_for",
]


@dataclass(frozen=True, slots=True)
class DesiredConfiguration:
    install_apps: frozenset[str]
    remove_apps: frozenset[str]
    install_certificates: frozenset[str]
    remove_certificates: frozenset[str]
    policy_ids: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "apps": {"install": sorted(self.install_apps), "remove": sorted(self.remove_apps)},
            "certificates": {
                "install": sorted(self.install_certificates),
                "remove": sorted(self.remove_certificates),
            },
            "policy_ids": list(self.policy_ids),
        }


def desired_configuration(
    policies: CompiledPolicySet,
    *,
    groups: frozenset[str],
    platform: Platform,
    ownership: Ownership,
) -> DesiredConfiguration:
    """Union of the matching configuration policies, removals winning over installs."""
    install_apps: set[str] = set()
    remove_apps: set[str] = set()
    install_certs: set[str] = set()
    remove_certs: set[str] = set()
    ids: list[str] = []
    for policy in policies.configuration:
        if not policy.assign.matches(groups, platform, ownership):
            continue
        ids.append(policy.id)
        install_apps |= policy.install_apps
        remove_apps |= policy.remove_apps
        install_certs |= policy.install_certificates
        remove_certs |= policy.remove_certificates
    return DesiredConfiguration(
        install_apps=frozenset(install_apps - remove_apps),
        remove_apps=frozenset(remove_apps),
        install_certificates=frozenset(install_certs - remove_certs),
        remove_certificates=frozenset(remove_certs),
        policy_ids=tuple(ids),
    )


def offboarding_policy_for(
    policies: CompiledPolicySet, *, groups: frozenset[str], ownership: Ownership
) -> OffboardingPolicy | None:
    """The offboarding policy that decides for a device of ``ownership`` whose user is in
    ``groups``: among the policies whose groups match and which name an action for that
    ownership, a group-assigned one wins over an unassigned one (then the lowest id).
    ``None`` when none covers it. :func:`offboarding_action` and the two-person rule of a
    full wipe (:mod:`mdm_core.device.wipes`) both read this one answer."""
    ordered = sorted(policies.offboarding, key=lambda p: (p.assign.groups is None, p.id))
    for policy in ordered:
        if policy.assign.matches_groups(groups) and ownership in policy.actions:
            return policy
    return None


def offboarding_action(
    policies: CompiledPolicySet, *, groups: frozenset[str], ownership: Ownership
) -> str:
    """What offboarding does to a device of ``ownership``: the action of
    :func:`offboarding_policy_for`. BYOD is always ``selective_wipe``; a corporate device no
    policy covers gets ``lock_and_retire`` (never a silent no-op, never an unrequested full
    wipe)."""
    if ownership is Ownership.BYOD:
        return "selective_wipe"
    policy = offboarding_policy_for(policies, groups=groups, ownership=ownership)
    if policy is None:
        return "lock_and_retire"
    return policy.actions[ownership].value
