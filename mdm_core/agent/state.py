"""The agent's state directory: enrollment record, device key, command log.

Layout (directory mode 0700):

- ``device_key.pem``: the P-256 private key, mode 0600 (:class:`mdm_core.agent.keys.DeviceKey`);
- ``enrollment.json``: server URL, device id, certificates, ownership, platform, and the
  posture fields the server last asked for (``collect``);
- ``commands.jsonl``: every command received and what the agent did with it (append only);
- ``installed.json``: the apps and certificates the server had it install (``install_*`` /
  ``remove_*`` commands), reported back as ``managed_apps`` / ``managed_certificates``, and
  the configurations it applied (``apply_configuration``). The reference agent records them
  only: it never installs packages on the host;
- ``managed/``: the work container, the one place where managed apps keep their data. A
  selective wipe deletes it, and nothing else of the host.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mdm_core.agent.keys import DeviceKey

__all__ = ["AgentState", "StateDir", "INVENTORY_KINDS"]

#: What ``installed.json`` records: the first two are reported as managed apps/certificates.
INVENTORY_KINDS = ("apps", "certificates", "configurations")


@dataclass
class AgentState:
    server_url: str
    device_id: str
    platform: str
    ownership: str
    certificate: str
    ca_certificate: str
    checkin_url: str
    enrolled_at: str
    collect: list[str] = field(default_factory=list)


class StateDir:
    """Reads and writes the agent's files under ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def ensure(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.path, 0o700)

    @property
    def key_path(self) -> Path:
        return self.path / "device_key.pem"

    @property
    def enrollment_path(self) -> Path:
        return self.path / "enrollment.json"

    @property
    def command_log_path(self) -> Path:
        return self.path / "commands.jsonl"

    @property
    def installed_path(self) -> Path:
        return self.path / "installed.json"

    @property
    def managed_path(self) -> Path:
        """The work container: managed apps' data (deleted by a selective wipe)."""
        return self.path / "managed"

    def _inventory(self) -> dict[str, list[str]]:
        try:
            data = json.loads(self.installed_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        return {
            kind: sorted({str(x) for x in data.get(kind, []) if isinstance(x, str)})
            for kind in INVENTORY_KINDS
        }

    def _write_inventory(self, inventory: dict[str, list[str]]) -> None:
        self.ensure()
        tmp = self.installed_path.with_name(f".installed.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(inventory, fh, indent=2)
        os.replace(tmp, self.installed_path)

    def installed(self) -> dict[str, list[str]]:
        """``{"apps": [...], "certificates": [...]}`` (sorted; empty lists when none)."""
        inventory = self._inventory()
        return {"apps": inventory["apps"], "certificates": inventory["certificates"]}

    def configurations(self) -> list[str]:
        """The configurations applied (sorted)."""
        return self._inventory()["configurations"]

    def set_installed(self, kind: str, name: str, present: bool) -> None:
        """Add (``present``) or remove ``name`` in the ``apps``, ``certificates`` or
        ``configurations`` set."""
        if kind not in INVENTORY_KINDS:
            raise ValueError(f"unknown installed kind {kind!r}")
        current = self._inventory()
        items = set(current[kind])
        if present:
            items.add(name)
        else:
            items.discard(name)
        current[kind] = sorted(items)
        self._write_inventory(current)

    def remove_installed(self, named: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
        """Remove exactly the ``named`` items (per kind) in one atomic rewrite of
        ``installed.json``; returns what was there and went, per kind (sorted). Names that
        were not recorded are ignored; the other entries stay as they are."""
        unknown = set(named) - set(INVENTORY_KINDS)
        if unknown:
            raise ValueError(f"unknown installed kind(s) {sorted(unknown)}")
        current = self._inventory()
        removed: dict[str, list[str]] = {}
        for kind in INVENTORY_KINDS:
            gone = set(current[kind]) & set(named.get(kind, ()))
            removed[kind] = sorted(gone)
            current[kind] = sorted(set(current[kind]) - gone)
        if any(removed.values()):
            self._write_inventory(current)
        return removed

    def wipe_managed(self) -> int | None:
        """Delete the work container (:attr:`managed_path`) and everything in it; returns how
        many files went, ``None`` when there was none. A symbolic link in its place is
        removed as a link (what it points to is not touched), and links inside are never
        followed."""
        path = self.managed_path
        if path.is_symlink() or path.is_file():
            path.unlink()
            return 1
        if not path.exists():
            return None
        count = sum(  # files, and links (to directories too: os.walk lists those as dirs)
            len(files) + sum(1 for d in dirs if os.path.islink(os.path.join(root, d)))
            for root, dirs, files in os.walk(path, followlinks=False)
        )
        shutil.rmtree(path)
        return count

    def key(self) -> DeviceKey:
        self.ensure()
        return DeviceKey.load_or_create(self.key_path)

    def load(self) -> AgentState | None:
        try:
            data = json.loads(self.enrollment_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return AgentState(**data)

    def save(self, state: AgentState) -> None:
        self.ensure()
        tmp = self.enrollment_path.with_name(f".enrollment.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(asdict(state), fh, indent=2)
        os.replace(tmp, self.enrollment_path)

    def log_command(self, command: dict[str, Any], outcome: str, detail: str) -> None:
        self.ensure()
        entry = {
            "at": datetime.now(UTC).isoformat(),
            "command": command,
            "outcome": outcome,
            "detail": detail,
        }
        fd = os.open(self.command_log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")

    def command_log(self) -> list[dict[str, Any]]:
        try:
            lines = self.command_log_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]
