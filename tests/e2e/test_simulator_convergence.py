"""The fleet simulator converges too: simulated devices execute install/remove commands on
their simulated installed set, report it (``managed_apps`` / ``managed_certificates`` in their
``agent``-format reports), and after a directory move end with exactly the new group's
configuration and nothing left queued."""

from __future__ import annotations

from pathlib import Path

from mdm_core.device.commands import DELIVERABLE_STATUSES
from mdm_core.directory.sync import SourceUser, sync_source
from mdm_core.runtime import MdmCore
from mdm_core.simulator.fleet import FleetSpec, ServiceProvisioner, SimDevice, Simulator
from tests.e2e.live_server import live_server


def _move(core: MdmCore, devices: list[SimDevice], group: str) -> None:
    users = sorted({d.user_id for d in devices})
    sync_source(
        core.storage, "import", [SourceUser(id=u, username=u, groups=(group,)) for u in users]
    )
    core.relay.drain()
    assert core.convergence.wait_idle(timeout=20)


def _pending(core: MdmCore, device: SimDevice) -> list[str]:
    assert device.device_id is not None
    return [
        c.type.value
        for c in core.commands.for_device(device.device_id)
        if c.status in DELIVERABLE_STATUSES
    ]


def test_simulated_devices_converge_marketing_to_finance(tmp_path: Path) -> None:
    with live_server(tmp_path) as live:
        core = live.core
        sim = Simulator(live.url, ServiceProvisioner(core.enrollment), concurrency=2)
        try:
            spec = FleetSpec(
                devices=2,
                platform_mix={"linux": 1.0, "ios": 1.0},
                jailbroken_ratio=0,
                encryption_off_ratio=0,
                old_os_ratio=0,
            )
            fleet = sim.run(spec).devices
            assert all(d.device_id for d in fleet)
            _move(core, fleet, "marketing")
            for device in fleet:
                sim.check_in(device)
                assert _pending(core, device) == []
                assert {"com.example.campaigns", "com.example.brand-assets"} <= device.installed[
                    "apps"
                ]
                assert device.installed["certificates"] == {"corp-wifi", "marketing-share"}
                # a policy-managed app Marketing does not get is removed; an unmanaged one stays
                assert "com.example.vpn" not in device.installed["apps"]
                assert "com.example.corpmail" in device.installed["apps"]

            _move(core, fleet, "finance")
            for device in fleet:
                assert sorted(_pending(core, device)) == [
                    "install_app",
                    "install_app",
                    "install_certificate",
                    "remove_app",
                    "remove_app",
                    "remove_certificate",
                ]
                sim.check_in(device)
                assert _pending(core, device) == []
                assert device.installed["apps"] == {
                    "com.example.corpmail",
                    "com.example.posture-agent",
                    "com.example.vpn",
                    "com.example.payroll",
                }
                assert device.installed["certificates"] == {"corp-wifi", "finance-vpn"}
                assert device.device_id is not None
                with core.storage.unit_of_work() as uow:
                    stored = uow.posture.latest(device.device_id)
                assert stored is not None
                assert {c.name for c in stored.posture.managed_certificates} == {
                    "corp-wifi",
                    "finance-vpn",
                }
            assert core.convergence.converge_all(trigger="after").queued == 0
        finally:
            sim.close()
