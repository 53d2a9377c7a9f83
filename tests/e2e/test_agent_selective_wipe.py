"""A BYOD device's selective wipe, server to reference agent over HTTP, and no full wipe.

The server names only what it manages on the phone (``selective_wipe_payload``); the agent
removes exactly that and its work container, acknowledges with what it removed, and the
user's own files beside it are untouched. A full wipe of the same device is refused by the
server whatever asks for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from mdm_core.agent.agent import Agent
from mdm_core.device.commands import CommandStatus
from mdm_core.device.selective_wipe import selective_wipe_payload
from mdm_core.device.wipes import FullWipeRefused
from mdm_core.posture.model import Ownership, Platform
from tests.e2e.live_server import LiveServer, live_server

ADMIN = "admin:test"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(tmp_path) as server:
        yield server


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_byod_selective_wipe_reaches_the_agent_and_spares_personal_data(
    live: LiveServer, tmp_path: Path
) -> None:
    token = live.core.enrollment.create_token(
        "bob@example.com", Ownership.BYOD, Platform.LINUX, timedelta(hours=1), ADMIN
    )
    home = tmp_path / "home"
    home.mkdir()
    photo = home / "holiday.jpg"
    photo.write_bytes(b"\xff\xd8 personal bytes " * 100)
    before = _digest(photo)
    agent = Agent(home / ".posture-agent", server_url=live.url)
    agent.enroll(ownership="byod", token=token, accept_notice=lambda n: True)
    commands = live.core.commands
    for ctype, setup in (
        ("install_app", {"app_id": "com.example.mail"}),
        ("install_certificate", {"name": "corp-root"}),
        ("apply_configuration", {"configuration_id": "corp-wifi"}),
    ):
        commands.enqueue(agent.device_id, ctype, setup, created_by=ADMIN)
    agent.checkin()  # installs, then reports them as managed
    agent.state_dir.set_installed("apps", "org.personal.game", True)  # recorded, not managed
    (agent.state_dir.managed_path / "com.example.mail").mkdir(parents=True)
    (agent.state_dir.managed_path / "com.example.mail" / "inbox").write_text("work mail")
    key_before = _digest(agent.state_dir.key_path)

    # the server refuses a full wipe of a personal device, whatever asks for it
    with pytest.raises(FullWipeRefused):
        live.core.wipes.request_full_wipe(agent.device_id, requested_by=ADMIN, reason="left")
    with pytest.raises(FullWipeRefused):
        commands.enqueue(agent.device_id, "wipe", {}, created_by="offboarding:test")

    with live.core.storage.unit_of_work() as uow:
        payload = selective_wipe_payload(
            uow, agent.device_id, reason="offboarded", policies=live.core.policies.current()
        )
    assert "com.example.mail" in payload["apps"] and "org.personal.game" not in payload["apps"]
    assert "corp-root" in payload["certificates"]
    assert payload["configurations"] == ["corp-wifi"]
    wipe = commands.enqueue(
        agent.device_id, "selective_wipe", payload, created_by="offboarding:test"
    )

    result = agent.checkin()
    assert [c["id"] for c, _ in result.executed] == [wipe.id]
    outcome = result.executed[0][1]
    assert outcome.status == "acknowledged" and "com.example.mail" in outcome.detail
    final = commands.get(wipe.id)
    assert final is not None and final.status is CommandStatus.ACKNOWLEDGED
    assert "com.example.mail" in (commands.transitions(wipe.id)[-1].detail or "")

    state = agent.state_dir
    assert state.installed() == {"apps": ["org.personal.game"], "certificates": []}
    assert state.configurations() == []
    assert not state.managed_path.exists()
    assert _digest(photo) == before and _digest(state.key_path) == key_before
    assert state.load() is not None
