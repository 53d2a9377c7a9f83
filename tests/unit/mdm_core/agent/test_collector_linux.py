"""The Linux collector: real values on this machine, and each probe on controlled inputs."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mdm_core.agent.agent import agent_report
from mdm_core.agent.collector_linux import (
    AGENT_VERSION,
    SECURE_BOOT_GUID,
    LinuxCollector,
    collect,
    parse_os_release,
    secure_boot_from_efivar,
)
from mdm_core.posture.model import Platform
from mdm_core.posture.normalize import normalize

OPTIONAL_TYPES = {
    "os_name": str,
    "os_version": str,
    "os_build": str,
    "kernel": str,
    "hostname": str,
    "model": str,
    "serial_number": str,
    "storage_encrypted": bool,
    "firewall_enabled": bool,
    "screen_lock_enabled": bool,
    "screen_lock_timeout_s": int,
    "secure_boot": bool,
}


def test_collects_this_machine_with_right_types_or_none() -> None:
    posture = collect()
    assert posture.collected_at.tzinfo is not None
    assert abs((datetime.now(UTC) - posture.collected_at).total_seconds()) < 30
    assert posture.agent_version == AGENT_VERSION
    for name, kind in OPTIONAL_TYPES.items():
        value = getattr(posture, name)
        assert value is None or type(value) is kind, f"{name}={value!r}"
    # what this machine certainly has
    assert posture.kernel == Path("/proc/sys/kernel/osrelease").read_text().strip()
    assert posture.os_version == parse_os_release(Path("/etc/os-release").read_text()).get(
        "VERSION_ID"
    )


def test_this_machines_report_normalises() -> None:
    report = agent_report(collect())
    assert report["platform"] == "linux" and report["agent_present"] is True
    assert None not in report.values()
    posture = normalize(report, "agent", platform=Platform.LINUX, received_at=datetime.now(UTC))
    assert posture.os_version == report.get("os_version")
    assert posture.storage_encrypted == report.get("storage_encrypted")


def test_report_honours_the_collect_list() -> None:
    report = agent_report(collect(), ["os_version", "storage_encrypted"])
    assert set(report) <= {"platform", "collected_at", "os_version", "storage_encrypted"}
    assert "hostname" not in report and "agent_present" not in report


def test_parse_os_release_handles_quoting_and_comments() -> None:
    text = (
        '# comment\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n\n'
        "BUILD_ID='rolling'\nBAD LINE\n"
    )
    assert parse_os_release(text) == {
        "NAME": "Debian GNU/Linux",
        "VERSION_ID": "12",
        "ID": "debian",
        "BUILD_ID": "rolling",
    }


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x06\x00\x00\x00\x01", True),
        (b"\x06\x00\x00\x00\x00", False),
        (b"\x06\x00", None),
        (b"", None),
    ],
)
def test_secure_boot_efivar(data: bytes, expected: bool | None) -> None:
    assert secure_boot_from_efivar(data) is expected


def _nft(*body: str) -> str:
    lines = ["table inet filter {", "  chain input {", *(f"    {b}" for b in body), "  }", "}"]
    return "\n".join(lines) + "\n"


HOOK = "type filter hook input priority 0;"


def _fake_root(tmp_path: Path, *, crypt: bool, root_dev: str = "254:0") -> Path:
    """A sysfs/proc tree: / on dm-0 (254:0) built on vda2 (8:2), dm-crypt or not."""
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(
        f"22 1 0:21 / /proc rw - proc proc rw\n27 1 {root_dev} / / rw - ext4 /dev/dm-0 rw\n"
    )
    dm = tmp_path / "sys/dev/block/254:0"
    (dm / "dm").mkdir(parents=True)
    (dm / "dm/uuid").write_text(
        "CRYPT-LUKS2-0123456789abcdef-root\n" if crypt else "LVM-abcdefgh\n"
    )
    (dm / "slaves/vda2").mkdir(parents=True)
    (tmp_path / "sys/class/block/vda2").mkdir(parents=True)
    (tmp_path / "sys/class/block/vda2/dev").write_text("8:2\n")
    (tmp_path / "sys/dev/block/8:2/slaves").mkdir(parents=True)
    (tmp_path / "sys/dev/block/8:2/partition").write_text("2\n")
    return tmp_path


def _no_tools(argv: Sequence[str]) -> str | None:
    return None


def test_storage_encrypted_true_on_dm_crypt(tmp_path: Path) -> None:
    c = LinuxCollector(root=_fake_root(tmp_path, crypt=True), run=_no_tools)
    assert c.storage_encrypted() is True


def test_storage_encrypted_false_on_plain_device(tmp_path: Path) -> None:
    c = LinuxCollector(root=_fake_root(tmp_path, crypt=False), run=_no_tools)
    assert c.storage_encrypted() is False


def test_storage_encrypted_none_on_overlay_root(tmp_path: Path) -> None:
    c = LinuxCollector(root=_fake_root(tmp_path, crypt=True, root_dev="0:45"), run=_no_tools)
    assert c.storage_encrypted() is None


def test_storage_encrypted_from_lsblk_dependency_tree(tmp_path: Path) -> None:
    lsblk = {
        "blockdevices": [
            {
                "name": "root",
                "type": "lvm",
                "fstype": "ext4",
                "maj:min": "254:0",
                "children": [
                    {
                        "name": "cryptroot",
                        "type": "crypt",
                        "fstype": "LVM2_member",
                        "maj:min": "253:1",
                        "children": [{"name": "vda2", "type": "part", "fstype": "crypto_LUKS"}],
                    }
                ],
            }
        ]
    }

    def run(argv: Sequence[str]) -> str | None:
        return json.dumps(lsblk) if argv[0] == "lsblk" else None

    # sysfs says LVM without crypt; lsblk sees the crypt layer under it
    c = LinuxCollector(root=_fake_root(tmp_path, crypt=False), run=run)
    assert c.storage_encrypted() is True


def test_storage_encrypted_none_when_nothing_can_tell(tmp_path: Path) -> None:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text("27 1 254:0 / / rw - ext4 /dev/vda rw\n")
    c = LinuxCollector(root=tmp_path, run=lambda argv: "not json")
    assert c.storage_encrypted() is None


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        ({}, None),
        (
            {"nft": _nft(f"{HOOK} policy accept;")},
            False,
        ),
        (
            {"nft": _nft(f"{HOOK} policy accept;", "tcp dport 22 accept")},
            True,
        ),
        (
            {"nft": _nft(f"{HOOK} policy drop;")},
            True,
        ),
        ({"iptables": "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n"}, False),
        ({"iptables": "-P INPUT DROP\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n"}, True),
        ({"iptables": "-P INPUT ACCEPT\n-A INPUT -p tcp --dport 22 -j ACCEPT\n"}, True),
        ({"ufw": "Status: inactive\n"}, False),
        ({"ufw": "Status: active\n\nTo Action From\n"}, True),
        ({"firewall-cmd": "running\n"}, True),
        ({"firewall-cmd": "not running\n", "iptables": "-P INPUT ACCEPT\n"}, False),
    ],
)
def test_firewall(outputs: dict[str, str], expected: bool | None) -> None:
    c = LinuxCollector(root=Path("/nonexistent"), run=lambda argv: outputs.get(argv[0]))
    assert c.firewall_enabled() is expected


def test_screen_lock_is_none_without_a_graphical_session() -> None:
    calls: list[Sequence[str]] = []

    def run(argv: Sequence[str]) -> str | None:
        calls.append(argv)
        return "true\n"

    c = LinuxCollector(run=run, environ={})
    assert c.screen_lock() == (None, None)
    assert calls == []  # gsettings defaults on a headless host would be a guess


def test_screen_lock_from_gsettings_in_a_session() -> None:
    answers = {"lock-enabled": "false\n", "idle-delay": "uint32 300\n"}
    c = LinuxCollector(run=lambda argv: answers.get(argv[-1]), environ={"DISPLAY": ":0"})
    assert c.screen_lock() == (False, 300)
    c = LinuxCollector(run=lambda argv: "garbage\n", environ={"WAYLAND_DISPLAY": "wayland-0"})
    assert c.screen_lock() == (None, None)


def test_secure_boot_probe(tmp_path: Path) -> None:
    assert LinuxCollector(root=tmp_path, run=_no_tools).secure_boot() is None  # no /sys/firmware
    (tmp_path / "sys/firmware").mkdir(parents=True)
    assert LinuxCollector(root=tmp_path, run=_no_tools).secure_boot() is False  # no UEFI
    efivars = tmp_path / "sys/firmware/efi/efivars"
    efivars.mkdir(parents=True)
    assert LinuxCollector(root=tmp_path, run=_no_tools).secure_boot() is None  # var unreadable
    (efivars / f"SecureBoot-{SECURE_BOOT_GUID}").write_bytes(b"\x06\x00\x00\x00\x01")
    assert LinuxCollector(root=tmp_path, run=_no_tools).secure_boot() is True


def test_collect_on_a_bare_root_is_all_none(tmp_path: Path) -> None:
    posture = LinuxCollector(root=tmp_path, run=_no_tools, environ={}).collect()
    assert posture.os_version is None and posture.kernel is None
    assert posture.storage_encrypted is None and posture.firewall_enabled is None
    assert posture.secure_boot is None and posture.screen_lock_enabled is None
    assert os.environ  # the real environment is untouched
