"""Marketing -> Finance end to end, on SQLite and PostgreSQL: a directory move alone (no human
step) converges the user's device. The real server over HTTP, the reference agent (recording,
never installing), the directory sync the ``posture directory import`` command runs, the
outbox relay and the bus consumer.

1. alice is in Marketing; her enrolled Linux laptop is brought to Marketing's configuration
   and reports it installed;
2. the directory moves her to Finance: exactly remove-Marketing + install-Finance commands are
   queued, once (the event re-delivered and the sync run again add nothing);
3. the access decision follows at once: Finance's stricter policy applies, and payroll is
   refused while the VPN it requires is missing;
4. the agent executes the commands at its next check-in and reports them installed; nothing
   more is queued and payroll is allowed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mdm_core.access.whatif import what_if
from mdm_core.access.wiring import evaluator_for
from mdm_core.agent.agent import Agent
from mdm_core.agent.collector_linux import LinuxPosture
from mdm_core.bus.events import DomainEvent, EventType
from mdm_core.device.commands import DELIVERABLE_STATUSES, Command
from mdm_core.directory.sync import SourceUser, sync_source
from mdm_core.posture.model import Platform
from mdm_core.runtime import MdmCore
from mdm_core.storage.sql.database import Database
from tests.e2e.live_server import LiveServer, live_server

ALICE = "alice@example.com"
MARKETING = {
    "apps": ["com.example.brand-assets", "com.example.campaigns", "com.example.posture-agent"],
    "certificates": ["corp-wifi", "marketing-share"],
}
FINANCE = {
    "apps": ["com.example.payroll", "com.example.posture-agent", "com.example.vpn"],
    "certificates": ["corp-wifi", "finance-vpn"],
}


def _alice(group: str) -> list[SourceUser]:
    return [SourceUser(id=ALICE, username="alice", email=ALICE, groups=(group,))]


def _healthy_laptop() -> LinuxPosture:
    return LinuxPosture(
        collected_at=datetime.now(UTC),
        os_name="debian",
        os_version="12",
        os_build="6.1.0-27-amd64",
        kernel="6.1.0-27-amd64",
        hostname="laptop-7",
        model=None,
        serial_number=None,
        storage_encrypted=True,
        firewall_enabled=True,
        screen_lock_enabled=True,
        screen_lock_timeout_s=300,
        secure_boot=True,
        agent_version="0.1.0",
    )


@pytest.fixture
def live(database: Database, tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(tmp_path, database_url=database.url) as server:
        yield server


def _pending(core: MdmCore, device_id: str) -> list[Command]:
    return [c for c in core.commands.for_device(device_id) if c.status in DELIVERABLE_STATUSES]


def _shown(commands: list[Command]) -> list[str]:
    return sorted(
        f"{c.type.value} {c.payload.get('app_id') or c.payload.get('name')}" for c in commands
    )


def _settle(core: MdmCore) -> None:
    """Let the outbox relay publish and the convergence worker finish (both run anyway)."""
    core.relay.drain()
    assert core.convergence.wait_idle(timeout=20)


def _payroll(core: MdmCore, device_id: str) -> dict[str, Any]:
    return what_if(
        evaluator_for(core),  # the evaluator a live login asks
        user_id=ALICE,
        device_id=device_id,
        app="payroll-web",
        now=datetime.now(UTC),
    )


def test_marketing_to_finance_converges_without_a_human_step(
    live: LiveServer, tmp_path: Path
) -> None:
    core = live.core
    sync_source(core.storage, "import", _alice("marketing"), actor="admin:test")
    _settle(core)  # her first membership event finds no device yet
    secret = core.enrollment.register_serial(
        "E2E-CONV-1", Platform.LINUX, ALICE, "admin:test"
    ).enrollment_secret
    agent = Agent(tmp_path / "agent", server_url=live.url, collector=_healthy_laptop)
    agent.enroll(ownership="corporate", serial_number="E2E-CONV-1", enrollment_secret=secret)
    device = agent.device_id
    try:
        agent.checkin()  # nothing installed yet

        # 1. the device gets Marketing's configuration (what `posture policy converge` does)
        first = core.convergence.converge_all()
        assert first.queued == 5
        agent.checkin()  # executes the installs, then reports at once
        assert agent.state_dir.installed() == MARKETING
        assert core.convergence.converge_all(trigger="again").queued == 0
        assert _pending(core, device) == []
        before = _payroll(core, device)
        assert before["input"]["user"]["groups"] == ["marketing"]

        # 2. the directory moves alice to Finance; nobody runs anything else
        seen: list[DomainEvent] = []
        core.bus.subscribe(EventType.USER_GROUPS_CHANGED, seen.append)
        summary = sync_source(core.storage, "import", _alice("finance"), actor="admin:test")
        assert summary.groups_changed_users == [ALICE]
        _settle(core)
        queued = _pending(core, device)
        assert _shown(queued) == [
            "install_app com.example.payroll",
            "install_app com.example.vpn",
            "install_certificate finance-vpn",
            "remove_app com.example.brand-assets",
            "remove_app com.example.campaigns",
            "remove_certificate marketing-share",
        ]
        assert all(c.created_by == "system:convergence" for c in queued)
        assert [e.payload["added"] for e in seen] == [["finance"]]
        assert seen[0].payload["removed"] == ["marketing"]

        # once: the event delivered again, and the same sync again, queue nothing new
        core.bus.publish(seen[0])
        _settle(core)
        again = sync_source(core.storage, "import", _alice("finance"), actor="admin:test")
        assert again.groups_changed_users == []
        _settle(core)
        assert sorted(c.id for c in _pending(core, device)) == sorted(c.id for c in queued)
        assert len(core.commands.for_device(device)) == 5 + 6

        # 3. the decision follows the new groups at once (Finance needs the VPN)
        moved = _payroll(core, device)
        assert moved["input"]["user"]["groups"] == ["finance"]
        assert "finance-strict" in moved["decision"]["policy_ids"]
        assert moved["decision"]["outcome"] != "allow"
        assert any(
            r.get("rule_id") == "finance-required-apps" for r in moved["decision"]["reasons"]
        ), moved["decision"]["reasons"]

        # 4. the agent executes them at its next check-in and reports what it has
        result = agent.checkin()
        assert sorted(c["type"] for c, _ in result.executed) == sorted(c.type.value for c in queued)
        assert all(outcome.status == "acknowledged" for _, outcome in result.executed)
        assert agent.state_dir.installed() == FINANCE
        with core.storage.unit_of_work() as uow:
            stored = uow.posture.latest(device)
        assert stored is not None
        assert sorted(a.app_id for a in stored.posture.managed_apps) == FINANCE["apps"]
        assert (
            sorted(c.name for c in stored.posture.managed_certificates) == (FINANCE["certificates"])
        )
        assert _pending(core, device) == []
        assert core.convergence.converge_all(trigger="after").queued == 0  # converged
        agent.checkin()
        assert _pending(core, device) == []
        allowed = _payroll(core, device)
        assert allowed["decision"]["outcome"] == "allow", allowed["decision"]
    finally:
        agent.close()
