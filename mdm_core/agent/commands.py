"""What the reference agent does with the commands the server sends it.

The reference agent runs on real hosts (developer laptops, CI machines), so it never acts
destructively: ``lock``, ``wipe``, ``selective_wipe``, ``retire``, ``install_*``/``remove_*``
and ``restart`` are **recorded** in the state directory's command log and acknowledged. That is
enough for the server to exercise its queue (queued -> delivered -> acknowledged) end to end.
A production agent would replace :class:`RecordingExecutor` with one that acts.

``install_app`` / ``remove_app`` / ``install_certificate`` / ``remove_certificate`` also update
the state directory's installed set (``installed.json``), which the next report carries as
``managed_apps`` / ``managed_certificates``: the agent asks for a fresh check-in after them,
so the server sees the device converge at once.

``request_checkin`` (and ``collect_posture`` / ``device_information``) are answered with a
fresh check-in by the runner. Unknown command types are answered ``error`` (never silently
acknowledged).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from mdm_core.agent.state import StateDir

__all__ = [
    "CommandOutcome",
    "CommandExecutor",
    "RecordingExecutor",
    "RECORDED_TYPES",
    "INVENTORY_TYPES",
]

#: Commands the reference agent records and acknowledges without acting on the host.
RECORDED_TYPES: frozenset[str] = frozenset(
    {
        "lock",
        "wipe",
        "selective_wipe",
        "retire",
        "restart",
        "clear_passcode",
        "install_app",
        "remove_app",
        "install_profile",
        "remove_profile",
        "install_certificate",
        "remove_certificate",
        "apply_configuration",
        "rotate_key",
        "message",
    }
)

#: Commands that change the recorded installed set: type -> (set, payload key, present).
INVENTORY_TYPES: dict[str, tuple[str, str, bool]] = {
    "install_app": ("apps", "app_id", True),
    "remove_app": ("apps", "app_id", False),
    "install_certificate": ("certificates", "name", True),
    "remove_certificate": ("certificates", "name", False),
}

#: Commands answered by sending fresh posture.
POSTURE_TYPES: frozenset[str] = frozenset(
    {"request_checkin", "collect_posture", "device_information"}
)


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    status: str  # acknowledged | error | not_now
    detail: str
    wants_checkin: bool = False


class CommandExecutor(Protocol):
    def execute(self, command: dict[str, Any]) -> CommandOutcome:
        """Carry out ``command`` (or refuse it) and say how it went."""
        ...


class RecordingExecutor:
    """Records every command; acknowledges the known ones, never touches the host."""

    def __init__(self, state: StateDir) -> None:
        self.state = state

    def execute(self, command: dict[str, Any]) -> CommandOutcome:
        ctype = str(command.get("type", ""))
        if ctype in INVENTORY_TYPES:
            outcome = self._inventory(ctype, command.get("payload"))
        elif ctype in RECORDED_TYPES:
            outcome = CommandOutcome(
                "acknowledged", f"{ctype} recorded by the reference agent (no action on host)"
            )
        elif ctype in POSTURE_TYPES:
            outcome = CommandOutcome("acknowledged", "fresh posture sent", wants_checkin=True)
        else:
            outcome = CommandOutcome("error", f"unsupported command type {ctype!r}")
        self.state.log_command(command, outcome.status, outcome.detail)
        return outcome

    def _inventory(self, ctype: str, payload: Any) -> CommandOutcome:
        kind, key, present = INVENTORY_TYPES[ctype]
        name = payload.get(key) if isinstance(payload, dict) else None
        if not isinstance(name, str) or not name or len(name) > 256:
            return CommandOutcome("error", f"{ctype}: payload needs {key}")
        self.state.set_installed(kind, name, present)
        verb = "installed" if present else "removed"
        return CommandOutcome(
            "acknowledged",
            f"{name} {verb} (recorded by the reference agent; no action on host)",
            wants_checkin=True,
        )
