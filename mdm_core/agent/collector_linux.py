"""Collects the real security posture of the Linux host the agent runs on.

Every value is read from the system (``/etc/os-release``, ``/proc``, ``/sys``, ``lsblk``,
firewall tools, ``gsettings``). Anything the collector cannot establish is ``None``: it never
guesses. In particular:

- ``storage_encrypted`` is ``True`` when the block device under ``/`` sits on dm-crypt (a
  ``CRYPT-`` device-mapper uuid in ``/sys/dev/block/*/dm/uuid`` somewhere down its ``slaves``
  chain, or a ``crypt`` / ``crypto_LUKS`` dependency in ``lsblk -s``), ``False`` when ``/`` is
  on a local block device with no such layer, ``None`` otherwise (overlay or network root,
  containers). Self-encrypting drives (OPAL) are invisible from here and report ``False``.
- ``firewall_enabled`` is ``True`` when any present tool shows an active firewall (nftables or
  iptables rules, ``ufw`` active, ``firewalld`` running), ``False`` when the present tools all
  show none, ``None`` when no tool could tell (absent, or not permitted).
- ``screen_lock_enabled`` comes from GNOME's ``gsettings`` only inside a graphical session;
  a headless host has no screen lock to report, so it is ``None``.
- ``secure_boot`` reads the UEFI ``SecureBoot`` variable; a host booted without UEFI (there is
  ``/sys/firmware`` but no ``/sys/firmware/efi``) cannot be in Secure Boot, so ``False``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "AGENT_VERSION",
    "LinuxPosture",
    "LinuxCollector",
    "collect",
    "parse_os_release",
    "secure_boot_from_efivar",
]

AGENT_VERSION = "0.1.0"

SECURE_BOOT_GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"

_SBIN = ("/usr/sbin", "/sbin")

Runner = Callable[[Sequence[str]], "str | None"]


@dataclass(frozen=True, slots=True)
class LinuxPosture:
    """What the collector established; ``None`` is "could not tell"."""

    collected_at: datetime
    os_name: str | None
    os_version: str | None
    os_build: str | None
    kernel: str | None
    hostname: str | None
    model: str | None
    serial_number: str | None
    storage_encrypted: bool | None
    firewall_enabled: bool | None
    screen_lock_enabled: bool | None
    screen_lock_timeout_s: int | None
    secure_boot: bool | None
    agent_version: str

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["collected_at"] = self.collected_at.isoformat()
        return data


def parse_os_release(text: str) -> dict[str, str]:
    """Parse os-release(5) ``KEY=value`` lines (shell quoting, comments, blanks)."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
            value = value.replace('\\"', '"').replace("\\$", "$").replace("\\\\", "\\")
        out[key.strip()] = value
    return out


def secure_boot_from_efivar(data: bytes) -> bool | None:
    """The ``SecureBoot`` efivar: 4 attribute bytes, then one byte, 1 = enabled."""
    if len(data) < 5:
        return None
    return data[4] == 1


def _run(argv: Sequence[str]) -> str | None:
    """Run a read-only system tool; ``None`` when it is absent, fails or hangs."""
    # Firewall tools live in /usr/sbin, which is not on every user's PATH.
    exe = shutil.which(argv[0], path=os.pathsep.join([os.environ.get("PATH", ""), *_SBIN]))
    if exe is None:
        return None
    try:
        # Fixed argv of read-only inspection tools, absolute path, no shell.
        done = subprocess.run(  # noqa: S603
            [exe, *argv[1:]],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
            env={**os.environ, "LC_ALL": "C"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout


class LinuxCollector:
    """Reads posture from a Linux root. ``root``/``run``/``environ`` are seams for tests."""

    def __init__(
        self,
        *,
        root: Path = Path("/"),
        run: Runner = _run,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.root = root
        self.run = run
        self.environ = os.environ if environ is None else environ

    def _read(self, rel: str) -> str | None:
        try:
            return (self.root / rel.lstrip("/")).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None

    # --- operating system -------------------------------------------------------------------

    def os_release(self) -> dict[str, str]:
        text = self._read("etc/os-release") or self._read("usr/lib/os-release")
        return parse_os_release(text) if text is not None else {}

    def kernel(self) -> str | None:
        text = self._read("proc/sys/kernel/osrelease")
        return text.strip() or None if text is not None else None

    # --- disk encryption --------------------------------------------------------------------

    def _root_device(self) -> str | None:
        """``major:minor`` of the filesystem mounted on ``/`` (from mountinfo)."""
        text = self._read("proc/self/mountinfo")
        if text is None:
            return None
        found: str | None = None
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 5 and parts[4] == "/":
                found = parts[2]  # the last mount on / wins (it hides the earlier ones)
        return found

    def _dm_crypt_chain(self, dev: str, depth: int = 0) -> bool | None:
        """True if ``dev`` or a device under it is dm-crypt; None if ``dev`` is not one."""
        node = self.root / "sys/dev/block" / dev
        if depth > 16 or not node.exists():
            return None
        dm_uuid = self._read(f"sys/dev/block/{dev}/dm/uuid")
        if dm_uuid is not None and dm_uuid.strip().startswith("CRYPT-"):
            return True
        slaves = node / "slaves"
        try:
            children = sorted(p.name for p in slaves.iterdir()) if slaves.is_dir() else []
        except OSError:
            return None
        for child in children:
            child_dev = self._read(f"sys/class/block/{child}/dev")
            if child_dev is None:
                return None
            if self._dm_crypt_chain(child_dev.strip(), depth + 1):
                return True
        return False

    def _lsblk_chain(self, dev: str) -> bool | None:
        """Whether ``lsblk`` shows a crypt layer under the device ``dev`` (``major:minor``).

        ``-s`` inverts the tree: each top-level entry is a device, its children the devices
        it is built on. ``None`` when lsblk is absent or does not list ``dev``.
        """
        out = self.run(["lsblk", "-J", "-s", "-o", "NAME,TYPE,FSTYPE,MAJ:MIN"])
        if out is None:
            return None
        try:
            tree = json.loads(out)
        except ValueError:
            return None
        nodes = tree.get("blockdevices") if isinstance(tree, dict) else None
        if not isinstance(nodes, list):
            return None

        def has_crypt(node: Any, depth: int = 0) -> bool:
            if not isinstance(node, dict) or depth > 16:
                return False
            if node.get("type") == "crypt" or node.get("fstype") == "crypto_LUKS":
                return True
            children = node.get("children")
            return isinstance(children, list) and any(has_crypt(c, depth + 1) for c in children)

        for node in nodes:
            if isinstance(node, dict) and node.get("maj:min") == dev:
                return has_crypt(node)
        return None

    def storage_encrypted(self) -> bool | None:
        dev = self._root_device()
        if dev is None or dev.startswith("0:"):
            return None  # overlay, tmpfs, NFS, virtiofs...: no local block device to judge
        verdicts = [v for v in (self._dm_crypt_chain(dev), self._lsblk_chain(dev)) if v is not None]
        if not verdicts:
            return None
        return any(verdicts)

    # --- firewall ---------------------------------------------------------------------------

    def firewall_enabled(self) -> bool | None:
        verdicts: list[bool] = []
        nft = self.run(["nft", "list", "ruleset"])
        if nft is not None:
            verdicts.append(_nft_has_rules(nft))
        ipt = self.run(["iptables", "-S"])
        if ipt is not None:
            verdicts.append(_iptables_has_rules(ipt))
        ufw = self.run(["ufw", "status"])
        if ufw is not None:
            verdicts.append("status: active" in ufw.lower())
        firewalld = self.run(["firewall-cmd", "--state"])
        if firewalld is not None:
            verdicts.append(firewalld.strip() == "running")
        if not verdicts:
            return None
        return any(verdicts)

    # --- screen lock ------------------------------------------------------------------------

    def _graphical_session(self) -> bool:
        return bool(self.environ.get("DISPLAY") or self.environ.get("WAYLAND_DISPLAY"))

    def screen_lock(self) -> tuple[bool | None, int | None]:
        if not self._graphical_session():
            return None, None
        enabled_raw = self.run(
            ["gsettings", "get", "org.gnome.desktop.screensaver", "lock-enabled"]
        )
        enabled: bool | None = None
        if enabled_raw is not None and enabled_raw.strip() in ("true", "false"):
            enabled = enabled_raw.strip() == "true"
        delay_raw = self.run(["gsettings", "get", "org.gnome.desktop.session", "idle-delay"])
        timeout: int | None = None
        if delay_raw is not None:
            tail = delay_raw.strip().split()[-1] if delay_raw.strip() else ""
            if tail.isdigit():
                timeout = int(tail)
        return enabled, timeout

    # --- secure boot ------------------------------------------------------------------------

    def secure_boot(self) -> bool | None:
        firmware = self.root / "sys/firmware"
        efi = firmware / "efi"
        if not firmware.is_dir():
            return None
        if not efi.is_dir():
            return False  # legacy BIOS or direct kernel boot: no UEFI, so no Secure Boot
        var = efi / "efivars" / f"SecureBoot-{SECURE_BOOT_GUID}"
        try:
            return secure_boot_from_efivar(var.read_bytes())
        except OSError:
            return None

    # --- identity ---------------------------------------------------------------------------

    def _dmi(self, name: str) -> str | None:
        text = self._read(f"sys/class/dmi/id/{name}")
        value = text.strip() if text is not None else ""
        if not value or value.lower() in {"to be filled by o.e.m.", "default string", "none"}:
            return None
        return value[:256]

    def collect(self) -> LinuxPosture:
        rel = self.os_release()
        kernel = self.kernel()
        lock_enabled, lock_timeout = self.screen_lock()
        try:
            hostname: str | None = socket.gethostname() or None
        except OSError:
            hostname = None
        return LinuxPosture(
            collected_at=datetime.now(UTC),
            os_name=rel.get("ID") or None,
            os_version=rel.get("VERSION_ID") or None,
            os_build=rel.get("BUILD_ID") or kernel,
            kernel=kernel,
            hostname=hostname[:256] if hostname else None,
            model=self._dmi("product_name"),
            serial_number=self._dmi("product_serial"),
            storage_encrypted=self.storage_encrypted(),
            firewall_enabled=self.firewall_enabled(),
            screen_lock_enabled=lock_enabled,
            screen_lock_timeout_s=lock_timeout,
            secure_boot=self.secure_boot(),
            agent_version=AGENT_VERSION,
        )


def _nft_has_rules(ruleset: str) -> bool:
    """A ruleset with at least one rule (a line inside a chain that is not its header/policy)."""
    in_chain = False
    for raw in ruleset.splitlines():
        line = raw.strip()
        if line.startswith("chain "):
            in_chain = True
            continue
        if in_chain and line == "}":
            in_chain = False
            continue
        if in_chain and line and not line.startswith(("type ", "policy ", "comment ")):
            return True
        if in_chain and line.startswith("type ") and "policy drop" in line:
            return True
    return False


def _iptables_has_rules(rules: str) -> bool:
    """``iptables -S``: any appended rule, or a built-in chain whose policy is not ACCEPT."""
    for line in rules.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "-A":
            return True
        if parts[0] == "-P" and len(parts) >= 3 and parts[2] != "ACCEPT":
            return True
    return False


def collect(root: Path = Path("/")) -> LinuxPosture:
    """Collect this host's posture (the entry point the agent uses). ``root`` is where the
    host's filesystem is seen (``/``, or the host's ``/`` mounted into the agent's container)."""
    if platform.system() != "Linux":
        raise RuntimeError("the reference collector runs on Linux only")
    return LinuxCollector(root=root).collect()
