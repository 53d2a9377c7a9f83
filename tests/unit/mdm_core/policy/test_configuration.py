"""Desired configuration per group, and the offboarding action per ownership."""

from __future__ import annotations

from pathlib import Path

from mdm_core.policy.configuration import (
    desired_configuration,
    offboarding_action,
    offboarding_policy_for,
)
from mdm_core.posture.model import Ownership, Platform

from .factories import REPO_POLICIES, policy_set

CONFIG = """
kind: ConfigurationPolicy
id: everyone
assign: {}
apps: {install: [agent]}
certificates: {install: [wifi]}
---
kind: ConfigurationPolicy
id: finance
assign: {groups: [finance]}
apps: {install: [vpn, payroll]}
certificates: {install: [finance-vpn]}
---
kind: ConfigurationPolicy
id: marketing
assign: {groups: [marketing]}
apps: {install: [campaigns]}
---
kind: ConfigurationPolicy
id: mobile-cleanup
assign: {platforms: [ios], ownership: [byod]}
apps: {remove: [payroll]}
certificates: {remove: [wifi]}
---
kind: OffboardingPolicy
id: default
actions: {corporate: lock_and_retire, byod: selective_wipe}
---
kind: OffboardingPolicy
id: execs
assign: {groups: [executives]}
actions: {corporate: full_wipe}
two_person_rule: true
"""


def test_moving_from_marketing_to_finance_changes_the_desired_set(tmp_path: Path) -> None:
    ps = policy_set(tmp_path, {"c.yaml": CONFIG})
    marketing = desired_configuration(
        ps, groups=frozenset({"marketing"}), platform=Platform.MACOS, ownership=Ownership.CORPORATE
    )
    finance = desired_configuration(
        ps, groups=frozenset({"finance"}), platform=Platform.MACOS, ownership=Ownership.CORPORATE
    )
    assert marketing.install_apps == {"agent", "campaigns"}
    assert finance.install_apps == {"agent", "vpn", "payroll"}
    assert finance.install_certificates == {"wifi", "finance-vpn"}
    assert finance.policy_ids == ("everyone", "finance")
    assert finance.to_json()["apps"]["install"] == ["agent", "payroll", "vpn"]


def test_removal_wins_over_install_from_another_policy(tmp_path: Path) -> None:
    ps = policy_set(tmp_path, {"c.yaml": CONFIG})
    byod_phone = desired_configuration(
        ps, groups=frozenset({"finance"}), platform=Platform.IOS, ownership=Ownership.BYOD
    )
    assert "payroll" not in byod_phone.install_apps and "payroll" in byod_phone.remove_apps
    assert "wifi" not in byod_phone.install_certificates


def test_nobody_assigned_gets_only_the_everyone_policy(tmp_path: Path) -> None:
    ps = policy_set(tmp_path, {"c.yaml": CONFIG})
    none = desired_configuration(
        ps, groups=frozenset(), platform=Platform.LINUX, ownership=Ownership.CORPORATE
    )
    assert none.install_apps == {"agent"} and none.policy_ids == ("everyone",)


def test_offboarding_action(tmp_path: Path) -> None:
    ps = policy_set(tmp_path, {"c.yaml": CONFIG})
    assert offboarding_action(ps, groups=frozenset(), ownership=Ownership.CORPORATE) == (
        "lock_and_retire"
    )
    assert (
        offboarding_action(ps, groups=frozenset({"executives"}), ownership=Ownership.CORPORATE)
        == "full_wipe"
    )
    assert (
        offboarding_action(ps, groups=frozenset({"executives"}), ownership=Ownership.BYOD)
        == "selective_wipe"
    )


def test_the_policy_that_applies_is_the_one_offboarding_action_reads(tmp_path: Path) -> None:
    ps = policy_set(tmp_path, {"c.yaml": CONFIG})
    execs = offboarding_policy_for(
        ps, groups=frozenset({"executives"}), ownership=Ownership.CORPORATE
    )
    assert execs is not None and execs.id == "execs" and execs.two_person_rule is True
    # execs names no BYOD action: the unassigned default decides BYOD, without the rule
    byod = offboarding_policy_for(ps, groups=frozenset({"executives"}), ownership=Ownership.BYOD)
    assert byod is not None and byod.id == "default" and byod.two_person_rule is False
    default = offboarding_policy_for(ps, groups=frozenset(), ownership=Ownership.CORPORATE)
    assert default is not None and default.id == "default"
    for groups in (frozenset(), frozenset({"executives"}), frozenset({"finance"})):
        policy = offboarding_policy_for(ps, groups=groups, ownership=Ownership.CORPORATE)
        assert policy is not None
        assert offboarding_action(ps, groups=groups, ownership=Ownership.CORPORATE) == (
            policy.actions[Ownership.CORPORATE].value
        )


def test_offboarding_defaults_without_a_policy(tmp_path: Path) -> None:
    ps = policy_set(tmp_path, {"c.yaml": CONFIG.split("---\nkind: OffboardingPolicy")[0]})
    assert offboarding_action(ps, groups=frozenset(), ownership=Ownership.CORPORATE) == (
        "lock_and_retire"
    )
    assert offboarding_policy_for(ps, groups=frozenset(), ownership=Ownership.CORPORATE) is None


def test_shipped_configuration() -> None:
    from mdm_core.policy.loader import load_policy_directory

    from .factories import NOW

    ps = load_policy_directory(REPO_POLICIES, now=NOW)
    finance = desired_configuration(
        ps, groups=frozenset({"finance"}), platform=Platform.IOS, ownership=Ownership.CORPORATE
    )
    assert {"com.example.vpn", "com.example.payroll"} <= finance.install_apps
