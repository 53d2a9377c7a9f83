"""The agent's state directory: enrollment record, device key, command log.

Layout (directory mode 0700):

- ``device_key.pem``: the P-256 private key, mode 0600 (:class:`mdm_core.agent.keys.DeviceKey`);
- ``enrollment.json``: server URL, device id, certificates, ownership, platform, and the
  posture fields the server last asked for (``collect``);
- ``commands.jsonl``: every command received and what the agent did with it (append only);
- ``installed.json``: the apps and certificates the server had it install (``install_*`` /
  ``remove_*`` commands), reported back as ``managed_apps`` / ``managed_certificates``. The
  reference agent records them only: it never installs packages on the host.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mdm_core.agent.keys import DeviceKey

__all__ = ["AgentState", "StateDir"]


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

    def installed(self) -> dict[str, list[str]]:
        """``{"apps": [...], "certificates": [...]}`` (sorted; empty lists when none)."""
        try:
            data = json.loads(self.installed_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            data = {}
        return {
            kind: sorted({str(x) for x in data.get(kind, []) if isinstance(x, str)})
            for kind in ("apps", "certificates")
        }

    def set_installed(self, kind: str, name: str, present: bool) -> None:
        """Add (``present``) or remove ``name`` in the ``apps`` or ``certificates`` set."""
        if kind not in ("apps", "certificates"):
            raise ValueError(f"unknown installed kind {kind!r}")
        current = self.installed()
        items = set(current[kind])
        if present:
            items.add(name)
        else:
            items.discard(name)
        current[kind] = sorted(items)
        self.ensure()
        tmp = self.installed_path.with_name(f".installed.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(current, fh, indent=2)
        os.replace(tmp, self.installed_path)

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
