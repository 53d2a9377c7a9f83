"""The agent's command executor (records, never acts) and its state directory."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mdm_core.agent.commands import RECORDED_TYPES, RecordingExecutor
from mdm_core.agent.state import AgentState, StateDir
from mdm_core.device.commands import CommandType


def test_every_queue_command_type_has_an_answer(tmp_path: Path) -> None:
    executor = RecordingExecutor(StateDir(tmp_path))
    for kind in CommandType:
        outcome = executor.execute({"id": f"c-{kind.value}", "type": kind.value, "payload": {}})
        assert outcome.status == "acknowledged", kind
    assert executor.execute({"id": "x", "type": "request_checkin"}).wants_checkin is True


@pytest.mark.parametrize("kind", sorted(RECORDED_TYPES))
def test_destructive_commands_are_recorded_not_performed(tmp_path: Path, kind: str) -> None:
    state = StateDir(tmp_path / "s")
    outcome = RecordingExecutor(state).execute({"id": "c1", "type": kind, "payload": {}})
    assert outcome.status == "acknowledged"
    assert "no action on host" in outcome.detail
    assert [e["command"]["type"] for e in state.command_log()] == [kind]
    assert tmp_path.exists()  # the host is untouched (wipe wipes nothing)


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
