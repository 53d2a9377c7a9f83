"""Normalisation: platform-native posture reports -> the one :class:`Posture` model.

Formats (``fmt``):

- ``apple``: keys of Apple MDM query results (``DeviceInformation`` queries such as
  ``OSVersion``, ``BuildVersion``, ``SerialNumber``, ``ProductName``, ``HostName``; the
  ``SecurityInfo`` result with ``FDE_Enabled``, ``PasscodePresent``, ``HardwareEncryptionCaps``,
  ``FirewallSettings.FirewallEnabled``, ``SecureBoot.SecureBootLevel``; ``ManagedApps`` /
  ``InstalledApplicationList`` entries with ``Identifier`` and ``ShortVersion``/``Version``;
  ``DeviceLocation`` with ``Latitude``/``Longitude``).
  https://developer.apple.com/documentation/devicemanagement/securityinforesponse
- ``android``: an Android Management API ``Device`` resource (``softwareInfo``,
  ``securityPosture.devicePosture``, ``deviceSettings``, ``hardwareInfo``, ``managementMode``,
  ``state``, ``applicationReports``, ``lastStatusReportTime``).
  https://developers.google.com/android/management/reference/rest/v1/enterprises.devices
- ``windows``: what the reference Windows collector reads (``OSVersion``, ``BuildNumber``,
  ``BitLocker.ProtectionStatus`` of the OS volume, ``SecureBoot.Enabled``,
  ``Firewall.{Domain,Private,Public}.Enabled``, ``ScreenLock``, ``PasswordRequired``,
  ``InstalledApplications``, ``CollectedAt``).
- ``agent``: the reference agent's native JSON, whose keys are :class:`Posture` field names.

Evidence, not guesses: an ``apple`` report that answers DeviceInformation or SecurityInfo
queries proves the MDM profile is installed (``mdm_profile_present``); a ``windows`` report
naming its ``AgentVersion`` proves the agent runs (``agent_present``).

Rules: unknown keys are ignored; a known key with the wrong type is refused with
:class:`ReportError` naming the key (``SecurityInfo.FDE_Enabled: expected a boolean``); a
security value that is absent or not established stays ``None`` — never guessed. Only the
fields in ``allow`` (the device's privacy profile) are read at all: personal data a profile
drops (app lists, location) is never even parsed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import UTC, date, datetime
from typing import Any

from pydantic import ValidationError

from mdm_core.domain.errors import MdmError
from mdm_core.posture.model import POSTURE_FIELDS, Platform, Posture

__all__ = [
    "FORMATS",
    "ReportError",
    "UnsupportedFormat",
    "FormatMismatch",
    "normalize",
]

MAX_TEXT = 256
MAX_APPS = 5000


class ReportError(MdmError):
    """A posture report holds a known key with a wrong type or an impossible value."""

    reason = "invalid_report"
    status = 422

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class UnsupportedFormat(MdmError):
    reason = "unsupported_format"
    status = 422


class FormatMismatch(MdmError):
    """The report format cannot describe this device's platform (an ``android`` report for
    an iPhone)."""

    reason = "format_mismatch"
    status = 422


Out = dict[str, Any]
Want = Callable[[str], bool]


class _Reader:
    """Typed access to a JSON object, naming the dotted path of anything refused."""

    __slots__ = ("data", "path")

    def __init__(self, data: Mapping[str, Any], path: str = "") -> None:
        self.data = data
        self.path = path

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str) -> Any:
        return self.data.get(key)

    def sub(self, key: str) -> _Reader | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise ReportError(self.name(key), f"expected an object, got {_kind(value)}")
        return _Reader(value, self.name(key))

    def flag(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is None or isinstance(value, bool):
            return value
        raise ReportError(self.name(key), f"expected a boolean, got {_kind(value)}")

    def text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ReportError(self.name(key), f"expected a string, got {_kind(value)}")
        if len(value) > MAX_TEXT:
            raise ReportError(self.name(key), f"longer than {MAX_TEXT} characters")
        return value

    def integer(self, key: str, *, lo: int = 0, hi: int = 2**31) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ReportError(self.name(key), f"expected an integer, got {_kind(value)}")
        if not lo <= value <= hi:
            raise ReportError(self.name(key), f"out of range [{lo}, {hi}]")
        return value

    def number(self, key: str) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ReportError(self.name(key), f"expected a number, got {_kind(value)}")
        return float(value)

    def items(self, key: str) -> list[Any] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, list):
            raise ReportError(self.name(key), f"expected a list, got {_kind(value)}")
        if len(value) > MAX_APPS:
            raise ReportError(self.name(key), f"more than {MAX_APPS} entries")
        return value

    def day(self, key: str) -> date | None:
        text = self.text(key)
        if text is None:
            return None
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise ReportError(self.name(key), "expected a date YYYY-MM-DD") from None

    def instant(self, key: str) -> datetime | None:
        text = self.text(key)
        if text is None:
            return None
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ReportError(self.name(key), "expected an ISO 8601 timestamp") from None
        if parsed.tzinfo is None:
            raise ReportError(self.name(key), "timestamp needs a time zone (e.g. Z)")
        return parsed.astimezone(UTC)

    def apps(self, key: str, id_keys: tuple[str, ...], version_keys: tuple[str, ...]) -> Any:
        entries = self.items(key)
        if entries is None:
            return None
        apps = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                raise ReportError(f"{self.name(key)}[{index}]", "expected an object")
            item = _Reader(entry, f"{self.name(key)}[{index}]")
            app_id = _first(item, id_keys, item.text)
            if app_id is None:
                raise ReportError(item.path, f"missing {' or '.join(id_keys)}")
            apps.append({"app_id": app_id, "version": _first(item, version_keys, item.text)})
        return tuple(apps)


def _kind(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def _first(reader: _Reader, keys: tuple[str, ...], get: Callable[[str], Any]) -> Any:
    for key in keys:
        value = get(key)
        if value is not None:
            return value
    return None


def _put(out: Out, want: Want, field: str, value: Callable[[], Any]) -> None:
    """Read ``field`` only if the profile keeps it; keep it only if it was established."""
    if want(field):
        got = value()
        if got is not None:
            out[field] = got


# --- apple ----------------------------------------------------------------------------------

_SECURE_BOOT_LEVELS = {"full": True, "medium": True, "off": False}


def _apple(r: _Reader, want: Want) -> tuple[Out, datetime | None]:
    out: Out = {}
    security = r.sub("SecurityInfo") or _Reader({}, "SecurityInfo")
    _put(out, want, "os_version", lambda: r.text("OSVersion"))
    _put(out, want, "os_build", lambda: r.text("BuildVersion"))
    _put(out, want, "serial_number", lambda: r.text("SerialNumber"))
    _put(out, want, "model", lambda: r.text("ProductName"))
    _put(out, want, "hostname", lambda: r.text("HostName") or r.text("DeviceName"))
    _put(out, want, "passcode_set", lambda: security.flag("PasscodePresent"))
    _put(out, want, "storage_encrypted", lambda: _apple_encryption(security))
    _put(
        out,
        want,
        "firewall_enabled",
        lambda: _nested_bool(security, "FirewallSettings", "FirewallEnabled"),
    )
    _put(out, want, "secure_boot", lambda: _apple_secure_boot(security))
    # Apple's MDM protocol exposes no jailbreak signal: ``jailbroken`` stays None.
    # A DeviceInformation/SecurityInfo answer only comes from an installed MDM profile.
    _put(out, want, "mdm_profile_present", lambda: _apple_answered_mdm(r))
    _put(out, want, "managed_apps", lambda: _apple_managed_apps(r))
    _put(
        out,
        want,
        "installed_apps",
        lambda: r.apps("InstalledApplicationList", ("Identifier",), ("ShortVersion", "Version")),
    )
    _put(out, want, "location", lambda: _location(r.sub("DeviceLocation"), "Latitude", "Longitude"))
    return out, None


def _apple_answered_mdm(r: _Reader) -> bool | None:
    answered = any(r.raw(key) is not None for key in ("SecurityInfo", "OSVersion", "BuildVersion"))
    return True if answered else None


def _apple_encryption(security: _Reader) -> bool | None:
    # macOS: FileVault (FDE_Enabled). iOS/iPadOS: Data Protection is on when file-level
    # hardware encryption (HardwareEncryptionCaps bit 2) is available AND a passcode is set.
    fde = security.flag("FDE_Enabled")
    if fde is not None:
        return fde
    caps = security.integer("HardwareEncryptionCaps", hi=3)
    passcode = security.flag("PasscodePresent")
    if caps is None or passcode is None:
        return None
    return bool(caps & 2) and passcode


def _apple_secure_boot(security: _Reader) -> bool | None:
    boot = security.sub("SecureBoot")
    if boot is None:
        return None
    level = boot.text("SecureBootLevel")
    return None if level is None else _SECURE_BOOT_LEVELS.get(level)  # "not supported" -> None


def _apple_managed_apps(r: _Reader) -> Any:
    listed = r.apps("ManagedApps", ("Identifier",), ("ShortVersion", "Version"))
    if listed is not None:
        return listed
    # ManagedApplicationList result: {bundle id: {"Status": "Managed", ...}}
    managed = r.sub("ManagedApplicationList")
    if managed is None:
        return None
    apps = []
    for bundle_id in managed.data:
        entry = managed.sub(str(bundle_id))
        if entry is None:
            continue
        if entry.text("Status") == "Managed":
            apps.append({"app_id": str(bundle_id)[:MAX_TEXT], "version": None})
    return tuple(apps)


# --- android --------------------------------------------------------------------------------

_ANDROID_POSTURE = {"SECURE": False, "POTENTIALLY_COMPROMISED": True}


def _android(r: _Reader, want: Want) -> tuple[Out, datetime | None]:
    out: Out = {}
    software = r.sub("softwareInfo") or _Reader({}, "softwareInfo")
    settings = r.sub("deviceSettings") or _Reader({}, "deviceSettings")
    hardware = r.sub("hardwareInfo") or _Reader({}, "hardwareInfo")
    _put(out, want, "os_version", lambda: software.text("androidVersion"))
    _put(out, want, "os_build", lambda: software.text("androidBuildNumber"))
    _put(out, want, "security_patch_level", lambda: software.day("securityPatchLevel"))
    _put(out, want, "storage_encrypted", lambda: settings.flag("isEncrypted"))
    # isDeviceSecure: "whether the device is secured with PIN/password" (a secure lock screen)
    _put(out, want, "passcode_set", lambda: settings.flag("isDeviceSecure"))
    _put(out, want, "screen_lock_enabled", lambda: settings.flag("isDeviceSecure"))
    _put(out, want, "jailbroken", lambda: _android_compromised(r))
    _put(out, want, "serial_number", lambda: hardware.text("serialNumber"))
    _put(out, want, "model", lambda: hardware.text("model"))
    _put(out, want, "work_profile_present", lambda: _android_work_profile(r))
    _put(out, want, "mdm_profile_present", lambda: _android_managed(r))
    _put(
        out,
        want,
        "installed_apps",
        lambda: r.apps("applicationReports", ("packageName",), ("versionName",)),
    )
    return out, r.instant("lastStatusReportTime")


def _android_compromised(r: _Reader) -> bool | None:
    posture = r.sub("securityPosture")
    if posture is None:
        return None
    details = posture.items("postureDetails") or []
    for index, detail in enumerate(details):
        if not isinstance(detail, Mapping):
            raise ReportError(f"{posture.name('postureDetails')}[{index}]", "expected an object")
        if detail.get("securityRisk") == "COMPROMISED_OS":
            return True
    value = posture.text("devicePosture")
    # AT_RISK (e.g. an unknown OS build) is not evidence of root either way: stays None.
    return None if value is None else _ANDROID_POSTURE.get(value)


def _android_work_profile(r: _Reader) -> bool | None:
    mode = r.text("managementMode")
    return {"PROFILE_OWNER": True, "DEVICE_OWNER": False}.get(mode) if mode else None


def _android_managed(r: _Reader) -> bool | None:
    state = r.text("state")
    return {"ACTIVE": True, "DISABLED": True, "DELETED": False}.get(state) if state else None


# --- windows --------------------------------------------------------------------------------

_BITLOCKER = {"On": True, "Off": False, 1: True, 0: False}  # Win32_EncryptableVolume: 2=unknown


def _windows(r: _Reader, want: Want) -> tuple[Out, datetime | None]:
    out: Out = {}
    _put(out, want, "os_version", lambda: r.text("OSVersion"))
    _put(out, want, "os_build", lambda: r.text("BuildNumber"))
    _put(out, want, "serial_number", lambda: r.text("SerialNumber"))
    _put(out, want, "model", lambda: r.text("Model"))
    _put(out, want, "hostname", lambda: r.text("ComputerName"))
    _put(out, want, "storage_encrypted", lambda: _windows_bitlocker(r))
    _put(out, want, "secure_boot", lambda: _nested_bool(r, "SecureBoot", "Enabled"))
    _put(out, want, "firewall_enabled", lambda: _windows_firewall(r))
    _put(out, want, "passcode_set", lambda: r.flag("PasswordRequired"))
    _put(out, want, "screen_lock_enabled", lambda: _nested_bool(r, "ScreenLock", "Enabled"))
    _put(out, want, "screen_lock_timeout_s", lambda: _windows_lock_timeout(r))
    _put(out, want, "agent_version", lambda: r.text("AgentVersion"))
    # The report names the agent that collected it: the agent is there and running.
    _put(out, want, "agent_present", lambda: True if r.text("AgentVersion") else None)
    _put(
        out,
        want,
        "installed_apps",
        lambda: r.apps("InstalledApplications", ("Id", "Name"), ("Version",)),
    )
    return out, r.instant("CollectedAt")


def _windows_bitlocker(r: _Reader) -> bool | None:
    bitlocker = r.sub("BitLocker")
    if bitlocker is None:
        return None
    value = bitlocker.raw("ProtectionStatus")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ReportError(bitlocker.name("ProtectionStatus"), "expected On|Off|Unknown or 0|1|2")
    if value not in _BITLOCKER and value not in ("Unknown", 2):
        raise ReportError(bitlocker.name("ProtectionStatus"), "expected On|Off|Unknown or 0|1|2")
    return _BITLOCKER.get(value)


def _windows_firewall(r: _Reader) -> bool | None:
    # On only when every profile (Domain, Private, Public) reports enabled; off when any is off.
    firewall = r.sub("Firewall")
    if firewall is None:
        return None
    states = [
        _nested_bool(firewall, profile, "Enabled") for profile in ("Domain", "Private", "Public")
    ]
    if False in states:
        return False
    return True if all(s is True for s in states) else None


def _windows_lock_timeout(r: _Reader) -> int | None:
    lock = r.sub("ScreenLock")
    return None if lock is None else lock.integer("TimeoutSeconds", hi=7 * 86400)


# --- agent ----------------------------------------------------------------------------------

_AGENT_STR = ("os_version", "os_build", "agent_version", "model", "serial_number", "hostname")
_AGENT_BOOL = (
    "storage_encrypted",
    "passcode_set",
    "jailbroken",
    "screen_lock_enabled",
    "firewall_enabled",
    "secure_boot",
    "agent_present",
    "mdm_profile_present",
    "work_profile_present",
)


def _agent(r: _Reader, want: Want) -> tuple[Out, datetime | None]:
    out: Out = {}
    for name in _AGENT_STR:
        _put(out, want, name, lambda name=name: r.text(name))  # type: ignore[misc]
    for name in _AGENT_BOOL:
        _put(out, want, name, lambda name=name: r.flag(name))  # type: ignore[misc]
    _put(out, want, "security_patch_level", lambda: r.day("security_patch_level"))
    _put(out, want, "passcode_min_length", lambda: r.integer("passcode_min_length", hi=64))
    _put(
        out, want, "screen_lock_timeout_s", lambda: r.integer("screen_lock_timeout_s", hi=7 * 86400)
    )
    _put(out, want, "managed_apps", lambda: r.apps("managed_apps", ("app_id",), ("version",)))
    _put(out, want, "installed_apps", lambda: r.apps("installed_apps", ("app_id",), ("version",)))
    _put(out, want, "managed_certificates", lambda: _certificates(r))
    _put(out, want, "location", lambda: _location(r.sub("location"), "latitude", "longitude"))
    return out, r.instant("collected_at")


def _certificates(r: _Reader) -> Any:
    """``managed_certificates``: a list of ``{"name": ...}`` objects (or bare names)."""
    entries = r.items("managed_certificates")
    if entries is None:
        return None
    out = []
    for index, entry in enumerate(entries):
        where = f"{r.name('managed_certificates')}[{index}]"
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, Mapping):
            raise ReportError(where, "expected an object or a name")
        name = _Reader(entry, where).text("name")
        if not name:
            raise ReportError(where, "missing name")
        out.append({"name": name})
    return tuple(out)


# --- shared ---------------------------------------------------------------------------------


def _nested_bool(r: _Reader, key: str, inner: str) -> bool | None:
    sub = r.sub(key)
    return None if sub is None else sub.flag(inner)


def _location(r: _Reader | None, lat: str, lon: str) -> dict[str, float] | None:
    if r is None:
        return None
    latitude, longitude = r.number(lat), r.number(lon)
    if latitude is None or longitude is None:
        return None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise ReportError(r.path, "latitude/longitude out of range")
    return {"latitude": latitude, "longitude": longitude}


_NORMALISERS: dict[str, Callable[[_Reader, Want], tuple[Out, datetime | None]]] = {
    "apple": _apple,
    "android": _android,
    "windows": _windows,
    "agent": _agent,
}

#: Which report formats can describe which platforms.
_FORMAT_PLATFORMS: dict[str, frozenset[Platform]] = {
    "apple": frozenset({Platform.IOS, Platform.IPADOS, Platform.MACOS}),
    "android": frozenset({Platform.ANDROID}),
    "windows": frozenset({Platform.WINDOWS}),
    "agent": frozenset(Platform),
}

FORMATS: tuple[str, ...] = tuple(_NORMALISERS)


def normalize(
    report: Mapping[str, Any],
    fmt: str,
    *,
    platform: Platform,
    received_at: datetime,
    allow: Collection[str] | None = None,
) -> Posture:
    """Normalise one native ``report`` of format ``fmt`` from a device of ``platform``.

    ``platform`` comes from the device record, never from the report. ``collected_at`` is the
    report's own timestamp when the format has one, capped at ``received_at`` (a clock in the
    future must not make posture look fresh), else ``received_at``. Only fields in ``allow``
    (default: every posture field) are read. Raises :class:`UnsupportedFormat`,
    :class:`FormatMismatch` or :class:`ReportError`.
    """
    normaliser = _NORMALISERS.get(fmt)
    if normaliser is None:
        raise UnsupportedFormat(
            f"unknown report format {fmt!r}; expected one of {', '.join(FORMATS)}"
        )
    if platform not in _FORMAT_PLATFORMS[fmt]:
        raise FormatMismatch(f"a {fmt!r} report cannot describe a {platform.value} device")
    if not isinstance(report, Mapping):
        raise ReportError("report", f"expected an object, got {_kind(report)}")
    allowed = POSTURE_FIELDS if allow is None else frozenset(allow)
    fields, collected_at = normaliser(_Reader(report), allowed.__contains__)
    if collected_at is None or collected_at > received_at:
        collected_at = received_at
    try:
        return Posture(platform=platform, collected_at=collected_at, **fields)
    except ValidationError as exc:  # a bound the readers do not know (e.g. max list length)
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "report"
        raise ReportError(where, err["msg"]) from None
