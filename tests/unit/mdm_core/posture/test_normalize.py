"""Normalisation of platform-native reports into Posture: per format, wrong types, no guessing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from mdm_core.posture.model import POSTURE_FIELDS, Platform
from mdm_core.posture.normalize import (
    FORMATS,
    FormatMismatch,
    ReportError,
    UnsupportedFormat,
    normalize,
)
from mdm_core.simulator.reports import DeviceTraits, native_reports

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

MAC = {
    "OSVersion": "15.1",
    "BuildVersion": "24B83",
    "SerialNumber": "C02XYZ",
    "ProductName": "Mac15,3",
    "HostName": "alice-mbp",
    "SecurityInfo": {
        "FDE_Enabled": True,
        "PasscodePresent": True,
        "FirewallSettings": {"FirewallEnabled": True, "BlockAllIncoming": False},
        "SecureBoot": {"SecureBootLevel": "full"},
    },
    "ManagedApps": [{"Identifier": "com.corp.mail", "ShortVersion": "3.1"}],
    "InstalledApplicationList": [{"Identifier": "com.personal.chat", "Version": "4"}],
    "DeviceLocation": {"Latitude": 48.85, "Longitude": 2.35},
    "SomethingNew": {"x": 1},
}

ANDROID = {
    "managementMode": "PROFILE_OWNER",
    "state": "ACTIVE",
    "softwareInfo": {
        "androidVersion": "15",
        "androidBuildNumber": "AP3A",
        "securityPatchLevel": "2024-11-05",
    },
    "deviceSettings": {"isEncrypted": True, "isDeviceSecure": True, "adbEnabled": False},
    "securityPosture": {"devicePosture": "SECURE"},
    "hardwareInfo": {"serialNumber": "R5CT", "model": "Pixel 8"},
    "applicationReports": [{"packageName": "com.personal.game", "versionName": "1.0"}],
    "lastStatusReportTime": "2026-03-01T11:55:00Z",
}

WINDOWS = {
    "OSVersion": "10.0.26100",
    "BuildNumber": "26100.2314",
    "ComputerName": "WIN-1",
    "BitLocker": {"ProtectionStatus": "On"},
    "SecureBoot": {"Enabled": True},
    "Firewall": {
        "Domain": {"Enabled": True},
        "Private": {"Enabled": True},
        "Public": {"Enabled": True},
    },
    "PasswordRequired": True,
    "ScreenLock": {"Enabled": True, "TimeoutSeconds": 300},
    "CollectedAt": "2026-03-01T11:59:00+00:00",
}


def _norm(report: dict[str, Any], fmt: str, platform: Platform, **kw: Any):
    return normalize(report, fmt, platform=platform, received_at=NOW, **kw)


def test_apple_macos() -> None:
    p = _norm(MAC, "apple", Platform.MACOS)
    assert (p.os_version, p.os_build, p.serial_number, p.model, p.hostname) == (
        "15.1",
        "24B83",
        "C02XYZ",
        "Mac15,3",
        "alice-mbp",
    )
    assert p.storage_encrypted is True and p.passcode_set is True
    assert p.firewall_enabled is True and p.secure_boot is True
    assert p.jailbroken is None  # Apple exposes no jailbreak signal: never guessed
    assert p.mdm_profile_present is True  # it answered MDM queries
    assert p.agent_present is None  # nothing in an MDM answer says an agent runs
    assert [a.app_id for a in p.managed_apps] == ["com.corp.mail"]
    assert [a.app_id for a in p.installed_apps] == ["com.personal.chat"]
    assert p.location is not None and p.location.latitude == 48.85
    assert p.collected_at == NOW and p.platform is Platform.MACOS


@pytest.mark.parametrize(
    ("caps", "passcode", "expected"),
    [(3, True, True), (3, False, False), (1, True, False), (None, True, None), (3, None, None)],
)
def test_apple_ios_data_protection(caps: int | None, passcode: bool | None, expected) -> None:
    security: dict[str, Any] = {"HardwareEncryptionCaps": caps, "PasscodePresent": passcode}
    p = _norm({"SecurityInfo": security}, "apple", Platform.IOS)
    assert p.storage_encrypted is expected


@pytest.mark.parametrize(
    ("level", "expected"),
    [("full", True), ("medium", True), ("off", False), ("not supported", None)],
)
def test_apple_secure_boot_levels(level: str, expected: bool | None) -> None:
    report = {"SecurityInfo": {"SecureBoot": {"SecureBootLevel": level}}}
    assert _norm(report, "apple", Platform.MACOS).secure_boot is expected


def test_apple_managed_application_list_dict_form() -> None:
    report = {
        "ManagedApplicationList": {
            "com.corp.mail": {"Status": "Managed"},
            "com.corp.old": {"Status": "Removing"},
        }
    }
    p = _norm(report, "apple", Platform.IOS)
    assert [a.app_id for a in p.managed_apps] == ["com.corp.mail"]


def test_android() -> None:
    p = _norm(ANDROID, "android", Platform.ANDROID)
    assert p.os_version == "15" and p.security_patch_level == date(2024, 11, 5)
    assert p.storage_encrypted is True and p.passcode_set is True
    assert p.jailbroken is False and p.work_profile_present is True
    assert p.mdm_profile_present is True
    assert p.serial_number == "R5CT" and p.model == "Pixel 8"
    assert [a.app_id for a in p.installed_apps] == ["com.personal.game"]
    assert p.collected_at == datetime(2026, 3, 1, 11, 55, tzinfo=UTC)


@pytest.mark.parametrize(
    ("posture", "expected"),
    [
        ({"devicePosture": "SECURE"}, False),
        ({"devicePosture": "POTENTIALLY_COMPROMISED"}, True),
        ({"devicePosture": "AT_RISK"}, None),  # not evidence of root either way
        (
            {"devicePosture": "AT_RISK", "postureDetails": [{"securityRisk": "COMPROMISED_OS"}]},
            True,
        ),
        ({"devicePosture": "SECURE", "postureDetails": [{"securityRisk": "COMPROMISED_OS"}]}, True),
        ({}, None),
    ],
)
def test_android_security_posture(posture: dict[str, Any], expected: bool | None) -> None:
    p = _norm({"securityPosture": posture}, "android", Platform.ANDROID)
    assert p.jailbroken is expected


def test_windows() -> None:
    p = _norm(WINDOWS, "windows", Platform.WINDOWS)
    assert p.storage_encrypted is True and p.secure_boot is True and p.firewall_enabled is True
    assert p.passcode_set is True and p.screen_lock_enabled is True
    assert p.screen_lock_timeout_s == 300 and p.hostname == "WIN-1"
    assert p.collected_at == datetime(2026, 3, 1, 11, 59, tzinfo=UTC)
    assert p.agent_present is None  # no AgentVersion: no evidence of the agent
    with_agent = _norm({**WINDOWS, "AgentVersion": "0.1.0"}, "windows", Platform.WINDOWS)
    assert with_agent.agent_present is True and with_agent.agent_version == "0.1.0"


@pytest.mark.parametrize(
    ("firewall", "expected"),
    [
        (
            {
                "Domain": {"Enabled": True},
                "Private": {"Enabled": False},
                "Public": {"Enabled": True},
            },
            False,
        ),
        ({"Domain": {"Enabled": True}, "Public": {"Enabled": True}}, None),  # one profile unknown
        ({}, None),
    ],
)
def test_windows_firewall_needs_every_profile(firewall: dict[str, Any], expected) -> None:
    assert _norm({"Firewall": firewall}, "windows", Platform.WINDOWS).firewall_enabled is expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [("On", True), ("Off", False), (1, True), (0, False), (2, None), ("Unknown", None)],
)
def test_windows_bitlocker(status: Any, expected: bool | None) -> None:
    report = {"BitLocker": {"ProtectionStatus": status}}
    assert _norm(report, "windows", Platform.WINDOWS).storage_encrypted is expected


def test_agent_native_fields_and_unknown_keys_ignored() -> None:
    report = {
        "platform": "linux",  # the device record decides the platform, not the report
        "os_name": "Debian",
        "kernel": "6.1",
        "os_version": "12",
        "storage_encrypted": False,
        "firewall_enabled": None,  # could not tell: stays None
        "passcode_min_length": 8,
        "security_patch_level": "2026-02-01",
        "managed_apps": [{"app_id": "corp-vpn", "version": "2"}],
        "collected_at": "2026-03-01T11:00:00Z",
    }
    p = _norm(report, "agent", Platform.LINUX)
    assert p.platform is Platform.LINUX and p.os_version == "12"
    assert p.storage_encrypted is False and p.firewall_enabled is None
    assert p.passcode_min_length == 8 and p.security_patch_level == date(2026, 2, 1)
    assert p.collected_at == datetime(2026, 3, 1, 11, 0, tzinfo=UTC)


def test_agent_format_covers_every_posture_field() -> None:
    report: dict[str, Any] = {name: None for name in POSTURE_FIELDS}
    assert _norm(report, "agent", Platform.LINUX).os_version is None


def test_future_collected_at_is_capped_at_receipt() -> None:
    future = (NOW + timedelta(days=30)).isoformat()
    assert _norm({"collected_at": future}, "agent", Platform.LINUX).collected_at == NOW


@pytest.mark.parametrize(
    ("fmt", "platform", "report", "field"),
    [
        (
            "apple",
            Platform.MACOS,
            {"SecurityInfo": {"FDE_Enabled": "yes"}},
            "SecurityInfo.FDE_Enabled",
        ),
        ("apple", Platform.MACOS, {"SecurityInfo": []}, "SecurityInfo"),
        ("apple", Platform.MACOS, {"OSVersion": 15}, "OSVersion"),
        (
            "apple",
            Platform.IOS,
            {"SecurityInfo": {"HardwareEncryptionCaps": True}},
            "SecurityInfo.HardwareEncryptionCaps",
        ),
        ("apple", Platform.MACOS, {"ManagedApps": [{"ShortVersion": "1"}]}, "ManagedApps[0]"),
        ("apple", Platform.MACOS, {"ManagedApps": ["com.x"]}, "ManagedApps[0]"),
        (
            "apple",
            Platform.MACOS,
            {"DeviceLocation": {"Latitude": 99, "Longitude": 0}},
            "DeviceLocation",
        ),
        (
            "android",
            Platform.ANDROID,
            {"deviceSettings": {"isEncrypted": 1}},
            "deviceSettings.isEncrypted",
        ),
        (
            "android",
            Platform.ANDROID,
            {"softwareInfo": {"securityPatchLevel": "last tuesday"}},
            "softwareInfo.securityPatchLevel",
        ),
        (
            "android",
            Platform.ANDROID,
            {"lastStatusReportTime": "2026-03-01T11:55:00"},
            "lastStatusReportTime",
        ),
        (
            "android",
            Platform.ANDROID,
            {"securityPosture": {"postureDetails": ["x"]}},
            "securityPosture.postureDetails[0]",
        ),
        (
            "windows",
            Platform.WINDOWS,
            {"BitLocker": {"ProtectionStatus": True}},
            "BitLocker.ProtectionStatus",
        ),
        (
            "windows",
            Platform.WINDOWS,
            {"BitLocker": {"ProtectionStatus": "Maybe"}},
            "BitLocker.ProtectionStatus",
        ),
        (
            "windows",
            Platform.WINDOWS,
            {"ScreenLock": {"TimeoutSeconds": "300"}},
            "ScreenLock.TimeoutSeconds",
        ),
        ("agent", Platform.LINUX, {"storage_encrypted": "true"}, "storage_encrypted"),
        ("agent", Platform.LINUX, {"passcode_min_length": True}, "passcode_min_length"),
        ("agent", Platform.LINUX, {"passcode_min_length": 65}, "passcode_min_length"),
        ("agent", Platform.LINUX, {"os_version": "x" * 257}, "os_version"),
        ("agent", Platform.LINUX, {"installed_apps": {"a": 1}}, "installed_apps"),
        ("agent", Platform.LINUX, {"collected_at": 12}, "collected_at"),
    ],
)
def test_wrong_types_are_refused_naming_the_field(
    fmt: str, platform: Platform, report: dict[str, Any], field: str
) -> None:
    with pytest.raises(ReportError) as info:
        _norm(report, fmt, platform)
    assert info.value.field == field
    assert info.value.reason == "invalid_report" and info.value.status == 422
    assert str(info.value).startswith(field + ":")


def test_unknown_format_and_mismatch() -> None:
    with pytest.raises(UnsupportedFormat):
        _norm({}, "blackberry", Platform.ANDROID)
    with pytest.raises(FormatMismatch):
        _norm(ANDROID, "android", Platform.IOS)
    with pytest.raises(FormatMismatch):
        _norm(MAC, "apple", Platform.WINDOWS)
    with pytest.raises(ReportError):
        normalize([], "agent", platform=Platform.LINUX, received_at=NOW)  # type: ignore[arg-type]


def test_fields_outside_allow_are_never_read() -> None:
    # a personal app list with garbage types is not even parsed when the profile drops it
    report = {"installed_apps": "not a list", "location": 5, "os_version": "12"}
    p = _norm(report, "agent", Platform.LINUX, allow={"os_version"})
    assert p.os_version == "12" and p.installed_apps == () and p.location is None
    p = _norm(MAC, "apple", Platform.MACOS, allow={"storage_encrypted"})
    assert p.storage_encrypted is True and p.installed_apps == () and p.serial_number is None


def test_too_many_apps_refused() -> None:
    apps = [{"app_id": f"a{i}"} for i in range(5001)]
    with pytest.raises(ReportError) as info:
        _norm({"installed_apps": apps}, "agent", Platform.LINUX)
    assert info.value.field == "installed_apps"


@pytest.mark.parametrize("platform", ["ios", "ipados", "macos", "android", "windows", "linux"])
@pytest.mark.parametrize("ownership", ["byod", "corporate"])
def test_simulator_reports_normalise(platform: str, ownership: str) -> None:
    for traits in (DeviceTraits(), DeviceTraits(encryption_off=True, old_os=True)):
        for fmt, report in native_reports(platform, "SER0001", ownership, traits, NOW):
            assert fmt in FORMATS
            posture = _norm(report, fmt, Platform(platform))
            if fmt != "agent" or platform == "linux":
                assert posture.storage_encrypted is (not traits.encryption_off)


def test_apple_without_mdm_answers_proves_nothing() -> None:
    p = _norm({"ManagedApps": []}, "apple", Platform.IOS)
    assert p.mdm_profile_present is None
