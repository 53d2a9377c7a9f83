"""Factories for policy tests: devices, postures, users, and policy sets from YAML text."""

from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from mdm_core.domain.model import DeviceRecord, DeviceStatus
from mdm_core.policy.compiled import CompiledPolicySet
from mdm_core.policy.loader import check_policy_directory, load_policy_directory
from mdm_core.policy.model import EvaluationInput, UserContext
from mdm_core.posture.model import ManagedApp, Ownership, Platform, Posture

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
REPO_POLICIES = Path(__file__).resolve().parents[4] / "policies"


def device(**over: Any) -> DeviceRecord:
    values: dict[str, Any] = {
        "id": "dev-1",
        "user_id": "alice",
        "platform": Platform.IOS,
        "ownership": Ownership.CORPORATE,
        "status": DeviceStatus.ACTIVE,
        "serial_number": "SN1",
        "cert_serial": "01",
        "key_thumbprint": "tp",
        "enrollment_generation": 1,
        "enrolled_at": NOW - timedelta(days=30),
        "last_checkin_at": NOW - timedelta(minutes=5),
    }
    values.update(over)
    return DeviceRecord(**values)


def healthy_posture(platform: Platform = Platform.IOS, **over: Any) -> Posture:
    values: dict[str, Any] = {
        "platform": platform,
        "collected_at": NOW - timedelta(minutes=5),
        "os_version": "18.3",
        "os_build": "22D63",
        "security_patch_level": date(2026, 2, 1),
        "storage_encrypted": True,
        "passcode_set": True,
        "passcode_min_length": 8,
        "jailbroken": False,
        "screen_lock_enabled": True,
        "screen_lock_timeout_s": 300,
        "firewall_enabled": True,
        "secure_boot": True,
        "agent_present": True,
        "mdm_profile_present": True,
        "work_profile_present": True,
        "managed_apps": (ManagedApp(app_id="com.example.vpn"),),
    }
    if platform in (Platform.MACOS, Platform.WINDOWS, Platform.LINUX):
        values["os_version"] = {"macos": "15.3", "windows": "10.0.22631", "linux": "6.8"}[
            platform.value
        ]
        values["os_build"] = "24D60"
    if platform is Platform.ANDROID:
        values["os_version"] = "14"
        values["os_build"] = "AP1A.240305.019"
    values.update(over)
    return Posture(**values)


def user(
    uid: str = "alice", groups: tuple[str, ...] = ("staff",), active: bool = True
) -> UserContext:
    return UserContext(id=uid, groups=frozenset(groups), active=active)


def request(**over: Any) -> EvaluationInput:
    values: dict[str, Any] = {
        "user": user(),
        "device": device(),
        "posture": healthy_posture(),
        "now": NOW,
        "posture_age": timedelta(minutes=5),
        "app": None,
        "rule_failures": {},
    }
    values.update(over)
    return EvaluationInput(**values)


def write(tmp: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return tmp


def policy_set(tmp: Path, files: dict[str, str], **kw: Any) -> CompiledPolicySet:
    return load_policy_directory(write(tmp, files), now=NOW, **kw)


def problems(tmp: Path, files: dict[str, str], **kw: Any) -> list[str]:
    compiled, found = check_policy_directory(write(tmp, files), now=NOW, **kw)
    assert (compiled is None) == bool(found)
    return [str(p) for p in found]


SIMPLE = """
kind: CompliancePolicy
id: base
assign: {}
max_posture_age: 1h
rules:
  - id: no-jailbreak
    severity: critical
    not_jailbroken: true
    remediation: Restore the OS.
  - id: encrypted
    severity: critical
    storage_encrypted: required
    remediation: Encrypt.
  - id: os
    severity: high
    min_os_version: {ios: "17.4", android: "13"}
    grace: {warn: 0d, restrict: 3d, block: 7d}
    remediation: Update.
  - id: passcode
    severity: medium
    passcode_min_length: 6
    remediation: Set a passcode.
"""
