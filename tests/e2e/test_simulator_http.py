"""The fleet simulator over real HTTP: every platform enrolls, checks in, and acknowledges
commands; BYOD personal data never reaches the store."""

from __future__ import annotations

from pathlib import Path

from mdm_core.device.commands import CommandStatus
from mdm_core.posture.model import Platform
from mdm_core.simulator.fleet import ALL_PLATFORMS, FleetSpec, ServiceProvisioner, Simulator
from tests.e2e.live_server import live_server


def test_twenty_devices_of_every_platform_over_http(tmp_path: Path) -> None:
    with live_server(tmp_path) as live:
        seen: list[str] = []
        sim = Simulator(
            live.url,
            ServiceProvisioner(live.core.enrollment),
            concurrency=4,
            on_progress=lambda what, device: seen.append(what),
        )
        spec = FleetSpec(devices=20, jailbroken_ratio=0.2, encryption_off_ratio=0.1, rounds=2)
        try:
            summary = sim.run(spec)
        finally:
            sim.close()

        assert summary.errors == []
        assert summary.enrolled == 20
        rows = summary.by_platform()
        assert set(rows) == set(ALL_PLATFORMS)
        two = sum(rows[p]["devices"] for p in ("ios", "ipados", "macos", "android"))
        assert summary.checkins == 2 * (20 + two)  # Apple and Android: MDM report + app report
        assert sum(r["jailbroken"] for r in rows.values()) == 4
        assert seen.count("enrolled") == 20 and seen.count("checked_in") == 40
        assert len(summary.latencies_ms) == summary.checkins
        assert 0 < summary.percentile_ms(0.5) <= summary.percentile_ms(0.99)

        with live.core.storage.unit_of_work() as uow:
            for device in summary.devices:
                assert device.device_id is not None
                record = uow.devices.get(device.device_id)
                assert record is not None
                assert record.platform is Platform(device.platform)
                assert record.ownership.value == device.ownership
                stored = uow.posture.latest(device.device_id)
                assert stored is not None and stored.seq >= 2
                if device.ownership == "byod":
                    assert stored.posture.installed_apps == ()
                    assert stored.posture.serial_number is None
                if device.traits.jailbroken:
                    assert stored.posture.jailbroken is True
                if device.traits.encryption_off:
                    assert stored.posture.storage_encrypted is False

        # a command queued for a simulated device is delivered and acknowledged next round
        target = summary.devices[0]
        assert target.device_id is not None
        cmd = live.core.commands.enqueue(target.device_id, "lock", {}, created_by="admin:t")
        again = Simulator(live.url, ServiceProvisioner(live.core.enrollment))
        try:
            again.check_in(target)
        finally:
            again.close()
        final = live.core.commands.get(cmd.id)
        assert final is not None and final.status is CommandStatus.ACKNOWLEDGED
        assert target.commands_acknowledged >= 1


def test_healthy_devices_of_every_platform_pass_the_shipped_policies(tmp_path: Path) -> None:
    """A fleet with nothing wrong is compliant on every platform and ownership under the
    policies we ship; a fleet with everything wrong is quarantined (a regression: 0 of 29
    healthy Android and 0 of 30 healthy Linux devices used to come out compliant)."""
    with live_server(tmp_path) as live:
        sim = Simulator(live.url, ServiceProvisioner(live.core.enrollment), concurrency=4)
        try:
            healthy = sim.run(
                FleetSpec(devices=36, jailbroken_ratio=0, encryption_off_ratio=0, old_os_ratio=0)
            )
            broken = sim.run(
                FleetSpec(devices=12, jailbroken_ratio=0, encryption_off_ratio=1.0, run_id="bad")
            )
        finally:
            sim.close()
        assert healthy.errors == [] and broken.errors == []
        rows = healthy.by_platform()
        assert set(rows) == set(ALL_PLATFORMS)
        for platform, row in rows.items():
            assert row["compliant"] == row["devices"], (platform, row)
        assert {d.ownership for d in healthy.devices} == {"corporate", "byod"}
        assert all(d.compliance.get("state") == "quarantined" for d in broken.devices)
