"""Platform-native posture reports for simulated devices.

Each simulated device answers in the format a real one of its kind produces, the formats
:mod:`mdm_core.posture.normalize` reads:

- iOS / iPadOS / macOS: Apple MDM ``DeviceInformation`` + ``SecurityInfo`` results (``apple``),
  then the report of the Posture app/agent on the device (``agent``). Apple's MDM protocol has
  no jailbreak signal and does not report the profile or agent being present, so those come
  from the app, as with the apps that detect jailbreaks; the app's report is the whole picture
  it can observe because the server keeps the latest report;
- Android: an Android Management API ``Device`` resource (``android``), rooted devices report
  ``POTENTIALLY_COMPROMISED`` with a ``COMPROMISED_OS`` posture detail; then the Posture app's
  report (``agent``): the management API says whether the device is secured but not how long
  its passcode is, so the passcode length comes from the app, as on Apple devices. A healthy
  device's security patch level is this month's (a fleet must not age out of compliance);
- Windows: the reference Windows collector's JSON (``windows``);
- Linux: the reference agent's JSON (``agent``).

A :class:`DeviceTraits` says what is wrong with a device: ``jailbroken`` (mobile platforms
only), ``encryption_off``, ``old_os``. BYOD devices also report a personal app list, which the
server's privacy profile must drop.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

__all__ = [
    "DeviceTraits",
    "JAILBREAKABLE",
    "CURRENT_OS",
    "OLD_OS",
    "native_reports",
    "PREINSTALLED_APPS",
]

JAILBREAKABLE = frozenset({"ios", "ipados", "android"})

CURRENT_OS = {
    "ios": ("18.1", "22B83"),
    "ipados": ("18.1", "22B83"),
    "macos": ("15.1", "24B83"),
    "android": ("15", "AP3A.241105.007"),
    "windows": ("10.0.26100", "26100.2314"),
    "linux": ("12", "6.1.0-27-amd64"),
}
OLD_OS = {
    "ios": ("15.7", "19H12"),
    "ipados": ("15.7", "19H12"),
    "macos": ("12.6", "21G115"),
    "android": ("11", "RQ3A.211001.001"),
    "windows": ("10.0.19041", "19041.1415"),
    "linux": ("10", "4.19.0-18-amd64"),
}
_MODELS = {
    "ios": "iPhone16,1",
    "ipados": "iPad14,3",
    "macos": "Mac15,3",
    "android": "Pixel 8",
    "windows": "Latitude 7440",
    "linux": "ThinkPad X1 Carbon Gen 11",
}
_PERSONAL_APPS = [("com.example.chat", "4.2"), ("com.example.photos", "1.9")]
_MANAGED_APPS = [("com.example.corpmail", "3.1.0"), ("com.example.vpn", "2.0.4")]
#: What a simulated device has installed before any command (its managed apps by id).
PREINSTALLED_APPS: frozenset[str] = frozenset(a for a, _ in _MANAGED_APPS)
_VERSIONS = dict(_MANAGED_APPS)


@dataclass(frozen=True, slots=True)
class DeviceTraits:
    jailbroken: bool = False
    encryption_off: bool = False
    old_os: bool = False

    @property
    def healthy(self) -> bool:
        return not (self.jailbroken or self.encryption_off or self.old_os)

    def labels(self) -> list[str]:
        out = []
        if self.jailbroken:
            out.append("jailbroken")
        if self.encryption_off:
            out.append("encryption off")
        if self.old_os:
            out.append("old OS")
        return out or ["healthy"]


def _patch_level(stamp: str, old: bool) -> str:
    """The security patch level a device of that age reports: this month's bulletin (the 5th,
    or last month's before the 5th) for a current device, 2021's for an old one."""
    if old:
        return "2021-10-05"
    today = datetime.fromisoformat(stamp).date()
    bulletin = date(today.year, today.month, 5)
    if today < bulletin:
        bulletin = (bulletin.replace(day=1) - timedelta(days=1)).replace(day=5)
    return bulletin.isoformat()


def _now(now: datetime | None) -> str:
    return (now or datetime.now(UTC)).isoformat().replace("+00:00", "Z")


def _apple(platform: str, serial: str, ownership: str, t: DeviceTraits, now: str) -> dict[str, Any]:
    version, build = (OLD_OS if t.old_os else CURRENT_OS)[platform]
    security: dict[str, Any]
    if platform == "macos":
        security = {
            "FDE_Enabled": not t.encryption_off,
            "FirewallSettings": {"FirewallEnabled": True, "BlockAllIncoming": False},
            "SecureBoot": {"SecureBootLevel": "full"},
            "PasscodePresent": True,
        }
    else:
        # Data Protection needs a passcode: "encryption off" is a device without one.
        security = {
            "HardwareEncryptionCaps": 3,
            "PasscodePresent": not t.encryption_off,
            "PasscodeCompliant": not t.encryption_off,
        }
    report: dict[str, Any] = {
        "OSVersion": version,
        "BuildVersion": build,
        "ProductName": _MODELS[platform],
        "SerialNumber": serial,
        "DeviceName": f"{platform}-{serial[-4:]}",
        "SecurityInfo": security,
        "ManagedApps": [{"Identifier": a, "ShortVersion": v} for a, v in _MANAGED_APPS],
    }
    if ownership == "byod":
        report["InstalledApplicationList"] = [
            {"Identifier": a, "ShortVersion": v} for a, v in _PERSONAL_APPS + _MANAGED_APPS
        ]
    return report


def _companion(
    platform: str, serial: str, ownership: str, t: DeviceTraits, now: str
) -> dict[str, Any]:
    version, build = (OLD_OS if t.old_os else CURRENT_OS)[platform]
    report: dict[str, Any] = {
        "platform": platform,
        "collected_at": now,
        "os_version": version,
        "os_build": build,
        "model": _MODELS[platform],
        "storage_encrypted": not t.encryption_off,
        "agent_present": True,
        "agent_version": "0.1.0",
        "mdm_profile_present": True,
        "managed_apps": [{"app_id": a, "version": v} for a, v in _MANAGED_APPS],
    }
    if platform == "macos":
        report.update(firewall_enabled=True, secure_boot=True, screen_lock_enabled=True)
        report["screen_lock_timeout_s"] = 300
    else:
        report.update(
            jailbroken=t.jailbroken,
            passcode_set=not t.encryption_off,
            passcode_min_length=0 if t.encryption_off else 6,
            screen_lock_enabled=True,
        )
    if platform == "android":
        report["security_patch_level"] = _patch_level(now, t.old_os)
        report["work_profile_present"] = ownership == "byod"
    if ownership == "corporate":
        report["serial_number"] = serial
    return report


def _android(serial: str, ownership: str, t: DeviceTraits, now: str) -> dict[str, Any]:
    version, build = (OLD_OS if t.old_os else CURRENT_OS)["android"]
    posture: dict[str, Any] = {"devicePosture": "SECURE"}
    if t.jailbroken:
        posture = {
            "devicePosture": "POTENTIALLY_COMPROMISED",
            "postureDetails": [{"securityRisk": "COMPROMISED_OS", "advice": []}],
        }
    report: dict[str, Any] = {
        "name": f"enterprises/sim/devices/{serial}",
        "managementMode": "PROFILE_OWNER" if ownership == "byod" else "DEVICE_OWNER",
        "state": "ACTIVE",
        "softwareInfo": {
            "androidVersion": version,
            "androidBuildNumber": build,
            "securityPatchLevel": _patch_level(now, t.old_os),
        },
        "deviceSettings": {
            "isEncrypted": not t.encryption_off,
            "encryptionStatus": "INACTIVE" if t.encryption_off else "ACTIVE_PER_USER",
            "isDeviceSecure": True,
        },
        "securityPosture": posture,
        "hardwareInfo": {"serialNumber": serial, "model": _MODELS["android"]},
        "lastStatusReportTime": now,
    }
    if ownership == "byod":
        report["applicationReports"] = [
            {"packageName": a, "versionName": v} for a, v in _PERSONAL_APPS
        ]
    return report


def _windows(serial: str, t: DeviceTraits, now: str) -> dict[str, Any]:
    version, build = (OLD_OS if t.old_os else CURRENT_OS)["windows"]
    return {
        "OSVersion": version,
        "BuildNumber": build,
        "SerialNumber": serial,
        "Model": _MODELS["windows"],
        "ComputerName": f"WIN-{serial[-6:]}",
        "BitLocker": {"ProtectionStatus": "Off" if t.encryption_off else "On"},
        "SecureBoot": {"Enabled": True},
        "Firewall": {
            "Domain": {"Enabled": True},
            "Private": {"Enabled": True},
            "Public": {"Enabled": True},
        },
        "PasswordRequired": True,
        "ScreenLock": {"Enabled": True, "TimeoutSeconds": 300},
        "AgentVersion": "0.1.0",
        "CollectedAt": now,
    }


def _agent(platform: str, serial: str, t: DeviceTraits, now: str) -> dict[str, Any]:
    version, build = (OLD_OS if t.old_os else CURRENT_OS).get(platform, CURRENT_OS["linux"])
    report: dict[str, Any] = {
        "platform": platform,
        "collected_at": now,
        "os_version": version,
        "os_build": build,
        "serial_number": serial,
        "storage_encrypted": not t.encryption_off,
        "agent_present": True,
        "agent_version": "0.1.0",
    }
    if platform in JAILBREAKABLE:
        report["jailbroken"] = t.jailbroken
    else:
        report.update(firewall_enabled=True, secure_boot=True, screen_lock_enabled=True)
        report["screen_lock_timeout_s"] = 300
        report["model"] = _MODELS.get(platform)
    return report


def native_reports(
    platform: str,
    serial: str,
    ownership: str,
    traits: DeviceTraits,
    now: datetime | None = None,
    installed: Mapping[str, Collection[str]] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """The ``(format, report)`` check-ins a device of this kind sends in one round.

    ``installed`` (``apps`` / ``certificates`` by name) replaces the default managed apps in
    the ``agent``-format reports and adds ``managed_certificates``."""
    reports = _native(platform, serial, ownership, traits, _now(now))
    if installed is not None:
        for fmt, report in reports:
            if fmt == "agent":
                apps = sorted(installed.get("apps", ()))
                report["managed_apps"] = [
                    {"app_id": a, "version": _VERSIONS.get(a, "1.0")} for a in apps
                ]
                report["managed_certificates"] = [
                    {"name": c} for c in sorted(installed.get("certificates", ()))
                ]
    return reports


def _native(
    platform: str, serial: str, ownership: str, traits: DeviceTraits, stamp: str
) -> list[tuple[str, dict[str, Any]]]:
    if platform in ("ios", "ipados", "macos"):
        # The MDM answers first; then the Posture app/agent on the device reports what MDM
        # cannot see (jailbreak, agent and profile presence). The server keeps the latest
        # report, so the app's report carries the whole picture it can observe.
        return [
            ("apple", _apple(platform, serial, ownership, traits, stamp)),
            ("agent", _companion(platform, serial, ownership, traits, stamp)),
        ]
    if platform == "android":
        return [
            ("android", _android(serial, ownership, traits, stamp)),
            ("agent", _companion(platform, serial, ownership, traits, stamp)),
        ]
    if platform == "windows":
        return [("windows", _windows(serial, traits, stamp))]
    return [("agent", _agent(platform, serial, traits, stamp))]
