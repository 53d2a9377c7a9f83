"""The agent's command executor (records, never acts) and its state directory."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mdm_core.agent.commands import INVENTORY_TYPES, RECORDED_TYPES, RecordingExecutor
from mdm_core.agent.state import AgentState, StateDir
from mdm_core.device.commands import CommandType


def _payload(kind: str) -> dict[str, str]:
    """A valid payload (install/remove commands name their app or certificate)."""
    if kind in INVENTORY_TYPES:
        return {INVENTORY_TYPES[kind][1]: "com.example.thing"}
    return {}


def test_every_queue_command_type_has_an_answer(tmp_path: Path) -> None:
    executor = RecordingExecutor(StateDir(tmp_path))
    for kind in CommandType:
        command = {"id": f"c-{kind.value}", "type": kind.value, "payload": _payload(kind.value)}
        outcome = executor.execute(command)
        assert outcome.status == "acknowledged", kind
    assert executor.execute({"id": "x", "type": "request_checkin"}).wants_checkin is True


@pytest.mark.parametrize("kind", sorted(RECORDED_TYPES))
def test_destructive_commands_are_recorded_not_performed(tmp_path: Path, kind: str) -> None:
    state = StateDir(tmp_path / "s")
    outcome = RecordingExecutor(state).execute(
        {"id": "c1", "type": kind, "payload": _payload(kind)}
    )
    assert outcome.status == "acknowledged"
    assert "no action on host" in outcome.detail
    assert [e["command"]["type"] for e in state.command_log()] == [kind]
    assert tmp_path.exists()  # the host is untouched (wipe wipes nothing)


def test_install_and_remove_update_the_recorded_installed_set(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "s")
    executor = RecordingExecutor(state)
    for ctype, payload in (
        ("install_app", {"app_id": "com.example.vpn"}),
        ("install_app", {"app_id": "com.example.payroll"}),
        ("install_certificate", {"name": "finance-vpn"}),
        ("remove_app", {"app_id": "com.example.payroll"}),
    ):
        outcome = executor.execute({"id": ctype, "type": ctype, "payload": payload})
        assert outcome.status == "acknowledged" and outcome.wants_checkin is True
    assert state.installed() == {"apps": ["com.example.vpn"], "certificates": ["finance-vpn"]}
    assert oct(state.installed_path.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("payload", [{}, {"app_id": ""}, {"app_id": 7}, {"app_id": "x" * 300}])
def test_a_malformed_install_is_an_error_and_changes_nothing(
    tmp_path: Path, payload: dict[str, object]
) -> None:
    state = StateDir(tmp_path / "s")
    outcome = RecordingExecutor(state).execute(
        {"id": "c", "type": "install_app", "payload": payload}
    )
    assert outcome.status == "error"
    assert state.installed() == {"apps": [], "certificates": []}


def test_unknown_commands_are_refused(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    outcome = RecordingExecutor(state).execute({"id": "c1", "type": "format_disk"})
    assert outcome.status == "error" and "unsupported" in outcome.detail
    assert state.command_log()[0]["outcome"] == "error"


def test_state_files_are_private(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "agent")
    assert state.load() is None and state.command_log() == []
    record = AgentState(
        server_url="http://127.0.0.1:1",
        device_id="d1",
        platform="linux",
        ownership="corporate",
        certificate="PEM",
        ca_certificate="CA",
        checkin_url="http://127.0.0.1:1/mdm/v1/checkin",
        enrolled_at="2026-11-23T09:00:00+00:00",
        collect=["os_version"],
    )
    state.save(record)
    state.log_command({"id": "c"}, "acknowledged", "ok")
    assert state.load() == record
    assert stat.S_IMODE(state.path.stat().st_mode) == 0o700
    for path in (state.enrollment_path, state.command_log_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    state.key()
    assert stat.S_IMODE(state.key_path.stat().st_mode) == 0o600
