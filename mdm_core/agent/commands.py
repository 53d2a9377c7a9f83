"""What the reference agent does with the commands the server sends it.

The reference agent runs on real hosts (developer laptops, CI machines), so it never acts
destructively on the host: ``lock``, ``wipe``, ``retire``, ``install_*``/``remove_*`` and
``restart`` are **recorded** in the state directory's command log and acknowledged. That is
enough for the server to exercise its queue (queued -> delivered -> acknowledged) end to end.
A full ``wipe`` in particular is recorded only: the reference agent never erases a real host.
A production agent would replace :class:`RecordingExecutor` with one that acts.

``install_app`` / ``remove_app`` / ``install_certificate`` / ``remove_certificate`` /
``apply_configuration`` also update the state directory's installed set (``installed.json``),
whose apps and certificates the next report carries as ``managed_apps`` /
``managed_certificates``: the agent asks for a fresh check-in after them, so the server sees
the device converge at once.

``selective_wipe`` is carried out on the agent's own managed data, and only there: exactly the
apps, certificates and configurations the payload names are removed from ``installed.json``,
and the work container ``<state>/managed/`` is deleted (when ``work_container`` is true).
Nothing else is touched: not the device key, not ``enrollment.json``, no file outside the
state directory. The payload is checked completely first; a malformed one (unknown key, a
name that is not a managed name, a list that is not a list) is answered ``error`` and nothing
is removed, never a partial wipe. The acknowledgement lists what was removed.

``request_checkin`` (and ``collect_posture`` / ``device_information``) are answered with a
fresh check-in by the runner. Unknown command types are answered ``error`` (never silently
acknowledged).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from mdm_core.agent.state import StateDir

__all__ = [
    "CommandOutcome",
    "CommandExecutor",
    "RecordingExecutor",
    "RECORDED_TYPES",
    "INVENTORY_TYPES",
    "SELECTIVE_WIPE",
]

#: Commands the reference agent records and acknowledges without acting on the host.
RECORDED_TYPES: frozenset[str] = frozenset(
    {
        "lock",
        "wipe",
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
    "apply_configuration": ("configurations", "configuration_id", True),
}

SELECTIVE_WIPE = "selective_wipe"
#: The payload lists of a selective wipe -> the installed.json set each one names.
_WIPE_LISTS = {"apps": "apps", "certificates": "certificates", "configurations": "configurations"}
_WIPE_KEYS = frozenset({"reason", "work_container", *_WIPE_LISTS})
#: A managed name (the server's ``MANAGED_NAME_PATTERN``): never a path.
_MANAGED_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._:+@!~-]{0,255}")
_MAX_NAMES = 2000
#: The server takes a result detail of at most 2000 characters.
_MAX_DETAIL = 1900

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
        if ctype == SELECTIVE_WIPE:
            outcome = self._selective_wipe(command.get("payload"))
        elif ctype in INVENTORY_TYPES:
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
        verb = ("applied" if kind == "configurations" else "installed") if present else "removed"
        return CommandOutcome(
            "acknowledged",
            f"{name} {verb} (recorded by the reference agent; no action on host)",
            wants_checkin=True,
        )

    def _selective_wipe(self, payload: Any) -> CommandOutcome:
        checked = _wipe_request(payload)
        if isinstance(checked, str):
            return CommandOutcome("error", f"selective_wipe refused, nothing removed: {checked}")
        named, work_container = checked
        removed = self.state.remove_installed(named)
        container = self.state.wipe_managed() if work_container else None
        parts = [
            f"{len(removed[kind])} {kind}"
            + (f" ({', '.join(removed[kind])})" if removed[kind] else "")
            for kind in _WIPE_LISTS.values()
        ]
        if not work_container:
            parts.append("work container kept (not named)")
        elif container is None:
            parts.append("work container: none present")
        else:
            parts.append(f"work container {self.state.managed_path} ({container} files)")
        absent = sum(len(named[k]) for k in named) - sum(len(v) for v in removed.values())
        detail = "selective wipe removed " + "; ".join(parts)
        if absent:
            detail += f"; {absent} named item(s) were not installed"
        detail += "; nothing else touched"
        if len(detail) > _MAX_DETAIL:
            detail = detail[: _MAX_DETAIL - 20] + "... (truncated)"
        return CommandOutcome("acknowledged", detail, wants_checkin=True)


def _wipe_request(payload: Any) -> tuple[dict[str, set[str]], bool] | str:
    """``(names per installed kind, work_container)`` of a selective-wipe payload, or why it
    is refused. Checked in full before anything is removed."""
    if not isinstance(payload, dict):
        return "payload must be an object"
    unknown = sorted(str(k) for k in set(payload) - _WIPE_KEYS)
    if unknown:
        return f"unknown payload key(s) {', '.join(unknown)}"
    reason = payload.get("reason")
    if reason is not None and not isinstance(reason, str):
        return "reason must be a string"
    work_container = payload.get("work_container", True)
    if not isinstance(work_container, bool):
        return "work_container must be true or false"
    named: dict[str, set[str]] = {}
    for key, kind in _WIPE_LISTS.items():
        values = payload.get(key, [])
        if not isinstance(values, list) or len(values) > _MAX_NAMES:
            return f"{key} must be a list of at most {_MAX_NAMES} names"
        for value in values:
            if not isinstance(value, str) or not _MANAGED_NAME.fullmatch(value):
                return f"{key}: {str(value)[:64]!r} is not a managed item name"
        named[kind] = set(values)
    return named, work_container
