"""The simulator's fleet planning and its platform-native reports (no server needed)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from mdm_core.posture.model import Platform
from mdm_core.posture.normalize import normalize
from mdm_core.simulator.fleet import (
    ALL_PLATFORMS,
    FleetSpec,
    SimDevice,
    SimSummary,
    parse_platform_mix,
    plan_fleet,
)
from mdm_core.simulator.reports import JAILBREAKABLE, DeviceTraits, native_reports

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_small_fleet_has_every_platform() -> None:
    fleet = plan_fleet(FleetSpec(devices=6, jailbroken_ratio=0))
    assert sorted(d.platform for d in fleet) == sorted(ALL_PLATFORMS)


def test_fleet_is_deterministic_per_seed_but_serials_are_unique_per_run() -> None:
    a = plan_fleet(FleetSpec(devices=30, seed=3))
    b = plan_fleet(FleetSpec(devices=30, seed=3))
    assert [d.platform for d in a] == [d.platform for d in b]
    assert [d.traits for d in a] == [d.traits for d in b]
    assert {d.serial_number for d in a}.isdisjoint({d.serial_number for d in b})
    assert len({d.key.thumbprint() for d in a}) == 30  # a key per device


def test_ratios_and_jailbreak_only_on_mobile() -> None:
    fleet = plan_fleet(
        FleetSpec(devices=200, jailbroken_ratio=0.1, encryption_off_ratio=0.2, old_os_ratio=0.05)
    )
    jailbroken = [d for d in fleet if d.traits.jailbroken]
    assert len(jailbroken) == 20
    assert all(d.platform in JAILBREAKABLE for d in jailbroken)
    assert sum(d.traits.encryption_off for d in fleet) == 40
    assert sum(d.traits.old_os for d in fleet) == 10
    assert {d.ownership for d in fleet} == {"corporate", "byod"}
    assert all(d.ownership == "corporate" for d in fleet if d.platform in ("windows", "linux"))


def test_platform_mix_weights() -> None:
    fleet = plan_fleet(FleetSpec(devices=100, platform_mix={"android": 1, "windows": 0}))
    assert Counter(d.platform for d in fleet) == {"android": 100}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("all", dict.fromkeys(ALL_PLATFORMS, 1.0)),
        ("", dict.fromkeys(ALL_PLATFORMS, 1.0)),
        ("ios=3,android=2", {"ios": 3.0, "android": 2.0}),
        ("linux", {"linux": 1.0}),
    ],
)
def test_parse_platform_mix(text: str, expected: dict[str, float]) -> None:
    assert parse_platform_mix(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("symbian=1", "unknown platform"),
        ("ios=x", "must be a number"),
        ("ios=-1", ">= 0"),
        ("ios=0", "no positive weight"),
    ],
)
def test_parse_platform_mix_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_platform_mix(text)


@pytest.mark.parametrize(
    "spec",
    [
        FleetSpec(devices=0),
        FleetSpec(devices=5, jailbroken_ratio=1.5),
        FleetSpec(devices=5, old_os_ratio=-0.1),
    ],
)
def test_plan_refuses_bad_specs(spec: FleetSpec) -> None:
    with pytest.raises(ValueError):
        plan_fleet(spec)


@pytest.mark.parametrize("platform", ALL_PLATFORMS)
@pytest.mark.parametrize("ownership", ["corporate", "byod"])
def test_healthy_reports_normalise(platform: str, ownership: str) -> None:
    reports = native_reports(platform, "SN123456", ownership, DeviceTraits(), NOW)
    formats = [fmt for fmt, _ in reports]
    expected_native = {"ios": "apple", "ipados": "apple", "macos": "apple"}.get(
        platform, {"android": "android", "windows": "windows"}.get(platform, "agent")
    )
    assert formats[0] == expected_native
    last = None
    for fmt, report in reports:
        last = normalize(report, fmt, platform=Platform(platform), received_at=NOW)
    assert last is not None
    assert last.storage_encrypted is True
    assert last.os_version is not None
    if platform in JAILBREAKABLE:
        assert last.jailbroken is False


@pytest.mark.parametrize("platform", ALL_PLATFORMS)
def test_bad_traits_show_in_the_normalised_posture(platform: str) -> None:
    traits = DeviceTraits(jailbroken=platform in JAILBREAKABLE, encryption_off=True, old_os=True)
    reports = native_reports(platform, "SN123456", "corporate", traits, NOW)
    postures = [
        normalize(r, fmt, platform=Platform(platform), received_at=NOW) for fmt, r in reports
    ]
    last = postures[-1]
    assert last.storage_encrypted is False
    assert all(p.storage_encrypted is False for p in postures if p.storage_encrypted is not None)
    assert last.os_version is not None and int(last.os_version.split(".")[0]) < 16
    if platform in JAILBREAKABLE:
        assert last.jailbroken is True


def test_byod_reports_carry_personal_data_for_the_server_to_drop() -> None:
    fmt, report = native_reports("ios", "SN1", "byod", DeviceTraits(), NOW)[0]
    posture = normalize(report, fmt, platform=Platform.IOS, received_at=NOW)
    assert posture.installed_apps and posture.serial_number == "SN1"


def test_summary_percentiles_and_rows() -> None:
    fleet = plan_fleet(FleetSpec(devices=6, jailbroken_ratio=0))
    for d in fleet:
        d.device_id, d.checkins_ok = f"dev-{d.index}", 1
        d.compliance = {"state": "compliant"}
    fleet[0].checkin_errors.append("401 replayed_proof: nope")
    summary = SimSummary(fleet, 1.0, [float(i) for i in range(1, 101)])
    assert summary.enrolled == 6 and summary.checkins == 6
    assert summary.percentile_ms(0.5) == pytest.approx(50.5)
    assert summary.percentile_ms(0.99) == pytest.approx(99.01)
    rows = summary.by_platform()
    assert list(rows) == list(ALL_PLATFORMS)
    assert sum(r["errors"] for r in rows.values()) == 1
    assert sum(r["compliant"] for r in rows.values()) == 6
    assert summary.errors == [f"{fleet[0].platform}#0 check-in: 401 replayed_proof: nope"]
    assert isinstance(fleet[0], SimDevice)
