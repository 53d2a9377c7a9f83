"""The one platform-neutral posture model every report is normalised into.

Owns the shape of a device's posture as the rest of the system sees it: the check-in
service produces it (after the privacy profile has dropped what may not be kept), the
store persists it, and the policy engine evaluates it.

Convention: ``None`` means "not reported". The policy engine treats a required check whose
field is ``None`` as failed (fail closed), never as passed.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Ownership",
    "Platform",
    "ManagedApp",
    "InstalledApp",
    "ManagedCertificate",
    "Location",
    "Posture",
    "POSTURE_FIELDS",
    "SECURITY_FIELDS",
]


class Platform(StrEnum):
    IOS = "ios"
    IPADOS = "ipados"
    MACOS = "macos"
    ANDROID = "android"
    WINDOWS = "windows"
    LINUX = "linux"
    CHROMEOS = "chromeos"


class Ownership(StrEnum):
    CORPORATE = "corporate"
    BYOD = "byod"


ShortText = Annotated[str, Field(max_length=256)]


class ManagedApp(BaseModel):
    """An app the MDM installed and manages (safe to report on BYOD)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    app_id: ShortText
    version: ShortText | None = None


class InstalledApp(BaseModel):
    """Any app on the device. Personal data on BYOD: the default privacy profile drops it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    app_id: ShortText
    version: ShortText | None = None


class ManagedCertificate(BaseModel):
    """A certificate the MDM installed (by the name configuration policies give it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: ShortText


class Location(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class Posture(BaseModel):
    """A device's normalised posture at ``collected_at``.

    Every field except ``platform`` and ``collected_at`` is optional: what a device did not
    report, or what its privacy profile does not allow, is ``None`` (or empty).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    platform: Platform
    collected_at: datetime
    os_version: ShortText | None = None
    os_build: ShortText | None = None
    security_patch_level: date | None = None
    storage_encrypted: bool | None = None
    passcode_set: bool | None = None
    passcode_min_length: int | None = Field(default=None, ge=0, le=64)
    jailbroken: bool | None = None
    screen_lock_enabled: bool | None = None
    screen_lock_timeout_s: int | None = Field(default=None, ge=0)
    firewall_enabled: bool | None = None
    secure_boot: bool | None = None
    agent_present: bool | None = None
    mdm_profile_present: bool | None = None
    work_profile_present: bool | None = None
    agent_version: ShortText | None = None
    model: ShortText | None = None
    serial_number: ShortText | None = None
    hostname: ShortText | None = None
    managed_apps: tuple[ManagedApp, ...] = Field(default=(), max_length=2000)
    installed_apps: tuple[InstalledApp, ...] = Field(default=(), max_length=5000)
    managed_certificates: tuple[ManagedCertificate, ...] = Field(default=(), max_length=500)
    location: Location | None = None


#: Names of the posture fields a privacy profile can allow or drop.
POSTURE_FIELDS: frozenset[str] = frozenset(Posture.model_fields) - {"platform", "collected_at"}

#: Fields whose value can change an access decision (the security state of a device).
SECURITY_FIELDS: frozenset[str] = frozenset(
    {
        "os_version",
        "os_build",
        "security_patch_level",
        "storage_encrypted",
        "passcode_set",
        "passcode_min_length",
        "jailbroken",
        "screen_lock_enabled",
        "screen_lock_timeout_s",
        "firewall_enabled",
        "secure_boot",
        "agent_present",
        "mdm_profile_present",
        "work_profile_present",
        "managed_apps",
    }
)
