"""The fleet simulator: many devices of every platform through the real device protocol.

Each simulated device has its own P-256 key and speaks the same HTTP protocol as a real one
(:class:`mdm_core.agent.client.DeviceClient`): it enrolls with a CSR and a single-use token
(BYOD, after accepting the privacy notice) or a registered serial (corporate), then checks in
with signed proofs, sending platform-native reports (:mod:`mdm_core.simulator.reports`), and
acknowledges the commands it receives. ``install_*`` / ``remove_*`` commands change the
device's simulated installed set (apps and certificates), which its ``agent``-format reports
carry as ``managed_apps`` / ``managed_certificates``; after changing it the device reports
again at once, so the server sees it converge. Bad devices (jailbroken, encryption off, old
OS) are drawn at the configured ratios.

The transport is injectable: real HTTP to a running server, or ``httpx.WSGITransport`` on a
Flask app in the same process. The simulator provisions tokens and serials through a
:class:`Provisioner` (the CLI binds it to the MDM core's enrollment service), and reports its
progress through a callback so the caller decides how to draw it.
"""

from __future__ import annotations

import random
import secrets
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

import httpx

from mdm_core.agent.client import DeviceClient, ProtocolError, make_http_client, notice_profile_id
from mdm_core.agent.keys import DeviceKey
from mdm_core.device.enrollment import EnrollmentService
from mdm_core.posture.model import Ownership, Platform
from mdm_core.simulator.reports import (
    JAILBREAKABLE,
    PREINSTALLED_APPS,
    DeviceTraits,
    native_reports,
)

__all__ = [
    "ALL_PLATFORMS",
    "BYOD_SHARE",
    "FleetSpec",
    "Provisioner",
    "ServiceProvisioner",
    "SimDevice",
    "SimSummary",
    "Simulator",
    "parse_platform_mix",
    "plan_fleet",
]

ALL_PLATFORMS = ("ios", "ipados", "macos", "android", "windows", "linux")
#: Share of devices enrolled as BYOD per platform (the rest are corporate).
BYOD_SHARE = {"ios": 0.5, "ipados": 0.2, "macos": 0.1, "android": 0.5, "windows": 0.0, "linux": 0.0}


class Provisioner(Protocol):
    """Admin-side set-up the simulated devices need before they can enroll."""

    def enrollment_token(self, user_id: str, ownership: str, platform: str) -> str:
        """Create a single-use enrollment token for ``user_id`` and return it."""
        ...

    def register_serial(self, serial_number: str, platform: str, user_id: str) -> str:
        """Pre-register ``serial_number`` for automated (corporate) enrollment; returns its
        enrollment secret."""
        ...


@dataclass(frozen=True, slots=True)
class FleetSpec:
    devices: int
    platform_mix: Mapping[str, float] = field(
        default_factory=lambda: dict.fromkeys(ALL_PLATFORMS, 1.0)
    )
    jailbroken_ratio: float = 0.1
    encryption_off_ratio: float = 0.05
    old_os_ratio: float = 0.05
    rounds: int = 1
    seed: int = 7
    run_id: str = ""


@dataclass
class SimDevice:
    index: int
    platform: str
    ownership: str
    serial_number: str
    user_id: str
    traits: DeviceTraits
    key: DeviceKey
    device_id: str | None = None
    enroll_error: str | None = None
    checkins_ok: int = 0
    checkin_errors: list[str] = field(default_factory=list)
    commands_acknowledged: int = 0
    compliance: dict[str, Any] = field(default_factory=dict)
    #: What is installed on the simulated device: ``apps`` and ``certificates`` by name.
    installed: dict[str, set[str]] = field(
        default_factory=lambda: {"apps": set(PREINSTALLED_APPS), "certificates": set()}
    )
    executed: list[dict[str, Any]] = field(default_factory=list)  # commands received, in order


@dataclass
class SimSummary:
    devices: list[SimDevice]
    elapsed_s: float
    latencies_ms: list[float]

    @property
    def enrolled(self) -> int:
        return sum(1 for d in self.devices if d.device_id is not None)

    @property
    def checkins(self) -> int:
        return sum(d.checkins_ok for d in self.devices)

    @property
    def errors(self) -> list[str]:
        out = [
            f"{d.platform}#{d.index} enroll: {d.enroll_error}"
            for d in self.devices
            if d.enroll_error
        ]
        for d in self.devices:
            out.extend(f"{d.platform}#{d.index} check-in: {e}" for e in d.checkin_errors)
        return out

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        if len(self.latencies_ms) == 1:
            return self.latencies_ms[0]
        cuts = statistics.quantiles(self.latencies_ms, n=100, method="inclusive")
        return cuts[max(0, min(98, round(q * 100) - 1))]

    def by_platform(self) -> dict[str, dict[str, int]]:
        rows: dict[str, Counter[str]] = {}
        for d in self.devices:
            row = rows.setdefault(d.platform, Counter())
            row["devices"] += 1
            row["enrolled"] += d.device_id is not None
            row["byod"] += d.ownership == "byod"
            row["bad"] += not d.traits.healthy
            row["jailbroken"] += d.traits.jailbroken
            row["checkins"] += d.checkins_ok
            row["errors"] += len(d.checkin_errors) + (d.enroll_error is not None)
            row["commands_acked"] += d.commands_acknowledged
            state = str(d.compliance.get("state") or "unknown")
            row["compliant"] += state == "compliant"
            row["noncompliant"] += state == "noncompliant"
            row["quarantined"] += state == "quarantined"
        return {p: dict(rows[p]) for p in sorted(rows, key=ALL_PLATFORMS.index)}


def parse_platform_mix(text: str) -> dict[str, float]:
    """``"ios=3,android=2,windows=1"`` -> weights; ``"all"`` or empty: every platform equally."""
    if not text.strip() or text.strip() == "all":
        return dict.fromkeys(ALL_PLATFORMS, 1.0)
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.strip().partition("=")
        if name not in ALL_PLATFORMS:
            raise ValueError(
                f"unknown platform {name!r}; expected one of {', '.join(ALL_PLATFORMS)}"
            )
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"{name}: weight must be a number, got {weight!r}") from None
        if value < 0:
            raise ValueError(f"{name}: weight must be >= 0")
        mix[name] = value
    if sum(mix.values()) <= 0:
        raise ValueError("the platform mix has no positive weight")
    return mix


def plan_fleet(spec: FleetSpec) -> list[SimDevice]:
    """Draw the fleet: platforms by weight (every weighted platform present when N allows),
    ownership per platform, bad traits at the configured ratios. Deterministic per seed."""
    if spec.devices < 1:
        raise ValueError("devices must be >= 1")
    for name, ratio in (
        ("jailbroken_ratio", spec.jailbroken_ratio),
        ("encryption_off_ratio", spec.encryption_off_ratio),
        ("old_os_ratio", spec.old_os_ratio),
    ):
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"{name} must be within [0, 1]")
    rng = random.Random(spec.seed)  # noqa: S311 (drawing simulation data, not secrets)
    weighted = [p for p in ALL_PLATFORMS if spec.platform_mix.get(p, 0) > 0]
    platforms = weighted[: spec.devices]
    weights = [spec.platform_mix[p] for p in weighted]
    platforms += rng.choices(weighted, weights=weights, k=spec.devices - len(platforms))
    rng.shuffle(platforms)
    mobile = [i for i, p in enumerate(platforms) if p in JAILBREAKABLE]
    jailbroken = set(
        rng.sample(mobile, k=min(len(mobile), round(spec.jailbroken_ratio * spec.devices)))
    )
    enc_off = set(
        rng.sample(range(spec.devices), k=round(spec.encryption_off_ratio * spec.devices))
    )
    old_os = set(rng.sample(range(spec.devices), k=round(spec.old_os_ratio * spec.devices)))
    run = spec.run_id or secrets.token_hex(4)  # serials stay unique across runs
    fleet = []
    for i, platform in enumerate(platforms):
        ownership = "byod" if rng.random() < BYOD_SHARE[platform] else "corporate"
        fleet.append(
            SimDevice(
                index=i,
                platform=platform,
                ownership=ownership,
                serial_number=f"SIM{run.upper()}{i:06d}",
                user_id=f"sim-user-{i % 97:03d}@example.com",
                traits=DeviceTraits(
                    jailbroken=i in jailbroken, encryption_off=i in enc_off, old_os=i in old_os
                ),
                key=DeviceKey.generate(),
            )
        )
    return fleet


class ServiceProvisioner:
    """:class:`Provisioner` on the MDM core's enrollment service (same process as the core)."""

    def __init__(
        self,
        enrollment: EnrollmentService,
        *,
        actor: str = "admin:simulator",
        token_ttl: timedelta = timedelta(hours=1),
    ) -> None:
        self.enrollment = enrollment
        self.actor = actor
        self.token_ttl = token_ttl

    def enrollment_token(self, user_id: str, ownership: str, platform: str) -> str:
        return self.enrollment.create_token(
            user_id, Ownership(ownership), Platform(platform), self.token_ttl, self.actor
        )

    def register_serial(self, serial_number: str, platform: str, user_id: str) -> str:
        registered = self.enrollment.register_serial(
            serial_number, Platform(platform), user_id, self.actor
        )
        return registered.enrollment_secret


Progress = Callable[[str, SimDevice], None]


class Simulator:
    """Drives a planned fleet through enrollment and check-ins over one HTTP client."""

    def __init__(
        self,
        base_url: str,
        provisioner: Provisioner,
        *,
        transport: httpx.BaseTransport | None = None,
        concurrency: int = 8,
        on_progress: Progress | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.provisioner = provisioner
        self.http = make_http_client(self.base_url, transport=transport)
        self.concurrency = max(1, concurrency)
        self.on_progress = on_progress
        self._lock = threading.Lock()
        self._latencies: list[float] = []

    def close(self) -> None:
        self.http.close()

    def run(self, spec: FleetSpec) -> SimSummary:
        fleet = plan_fleet(spec)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            list(pool.map(lambda d: self._lifecycle(d, spec.rounds), fleet))
        return SimSummary(fleet, time.perf_counter() - started, sorted(self._latencies))

    # --- one device -------------------------------------------------------------------------

    def _lifecycle(self, device: SimDevice, rounds: int) -> None:
        client = DeviceClient(self.base_url, device.key, http=self.http)
        try:
            self._enroll(device, client)
        except (ProtocolError, httpx.HTTPError, KeyError, ValueError) as exc:
            device.enroll_error = str(exc)
            self._progress("enroll_failed", device)
            return
        self._progress("enrolled", device)
        for _ in range(rounds):
            self._round(device, client)
            self._progress("checked_in", device)

    def _enroll(self, device: SimDevice, client: DeviceClient) -> None:
        if device.ownership == "byod":
            notice = client.privacy_notice("byod")
            accepted = notice_profile_id(notice)
            token = self.provisioner.enrollment_token(device.user_id, "byod", device.platform)
            client.enroll(
                platform=device.platform,
                ownership="byod",
                token=token,
                privacy_notice_accepted=accepted,
                common_name=device.serial_number,
            )
        else:
            secret = self.provisioner.register_serial(
                device.serial_number, device.platform, device.user_id
            )
            client.enroll(
                platform=device.platform,
                ownership="corporate",
                serial_number=device.serial_number,
                enrollment_secret=secret,
                common_name=device.serial_number,
            )
        device.device_id = client.device_id

    def check_in(self, device: SimDevice) -> None:
        """One more round for an enrolled device: its reports, then its commands answered."""
        if device.device_id is None:
            raise ValueError("the device is not enrolled")
        client = DeviceClient(self.base_url, device.key, device_id=device.device_id, http=self.http)
        self._round(device, client)

    def _round(self, device: SimDevice, client: DeviceClient) -> None:
        reports = native_reports(
            device.platform,
            device.serial_number,
            device.ownership,
            device.traits,
            installed=device.installed,
        )
        changed = False
        for fmt, report in reports:
            changed = self._send(device, client, fmt, report) or changed
        agent = [(f, r) for f, r in reports if f == "agent"]
        if changed and agent:  # report the new installed set at once, as the agent does
            fresh = native_reports(
                device.platform,
                device.serial_number,
                device.ownership,
                device.traits,
                installed=device.installed,
            )
            for fmt, report in fresh:
                if fmt == "agent":
                    self._send(device, client, fmt, report)

    def _send(
        self, device: SimDevice, client: DeviceClient, fmt: str, report: dict[str, Any]
    ) -> bool:
        """One check-in and its commands; ``True`` if a command changed the installed set."""
        t0 = time.perf_counter()
        try:
            answer = client.checkin(fmt, report)
        except (ProtocolError, httpx.HTTPError) as exc:
            device.checkin_errors.append(str(exc))
            return False
        with self._lock:
            self._latencies.append((time.perf_counter() - t0) * 1000)
        device.checkins_ok += 1
        device.compliance = answer.compliance
        changed = False
        for command in answer.commands:
            device.executed.append(command)
            status, detail, did = _execute(device, command)
            changed = changed or did
            try:
                client.post_result(str(command["id"]), status, detail)
                device.commands_acknowledged += status == "acknowledged"
            except (ProtocolError, httpx.HTTPError, KeyError) as exc:
                device.checkin_errors.append(f"command result: {exc}")
        return changed

    def _progress(self, what: str, device: SimDevice) -> None:
        if self.on_progress is not None:
            self.on_progress(what, device)


#: Commands that change a simulated device's installed set: type -> (set, payload key, present).
_INVENTORY: dict[str, tuple[str, str, bool]] = {
    "install_app": ("apps", "app_id", True),
    "remove_app": ("apps", "app_id", False),
    "install_certificate": ("certificates", "name", True),
    "remove_certificate": ("certificates", "name", False),
}


def _execute(device: SimDevice, command: dict[str, Any]) -> tuple[str, str, bool]:
    """Carry out one command on the simulated device: ``(status, detail, changed)``."""
    effect = _INVENTORY.get(str(command.get("type", "")))
    if effect is None:
        return "acknowledged", "simulated device", False
    kind, key, present = effect
    payload = command.get("payload")
    name = payload.get(key) if isinstance(payload, dict) else None
    if not isinstance(name, str) or not name:
        return "error", f"payload needs {key}", False
    items = device.installed[kind]
    before = name in items
    if present:
        items.add(name)
    else:
        items.discard(name)
    return "acknowledged", f"{name} {'installed' if present else 'removed'}", before != present
