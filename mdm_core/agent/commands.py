"""What the reference agent does with the commands the server sends it.

The reference agent runs on real hosts (developer laptops, CI machines), so it never acts
destructively: ``lock``, ``wipe``, ``selective_wipe``, ``retire``, ``install_*``/``remove_*``
and ``restart`` are **recorded** in the state directory's command log and acknowledged. That is
enough for the server to exercise its queue (queued -> delivered -> acknowledged) end to end.
A production agent would replace :class:`RecordingExecutor` with one that acts.

``request_checkin`` (and ``collect_posture`` / ``device_information``) are answered with a
fresh check-in by the runner. Unknown command types are answered ``error`` (never silently
acknowledged).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from mdm_core.agent.state import StateDir

__all__ = ["CommandOutcome", "CommandExecutor", "RecordingExecutor", "RECORDED_TYPES"]

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
        if ctype in RECORDED_TYPES:
            outcome = CommandOutcome(
                "acknowledged", f"{ctype} recorded by the reference agent (no action on host)"
            )
        elif ctype in POSTURE_TYPES:
            outcome = CommandOutcome("acknowledged", "fresh posture sent", wants_checkin=True)
        else:
            outcome = CommandOutcome("error", f"unsupported command type {ctype!r}")
        self.state.log_command(command, outcome.status, outcome.detail)
        return outcome
