"""Device convergence on a real core (SQLite and PostgreSQL; in-process and Redis buses): a
membership change queues exactly the missing installs and surplus removals through the bus
consumer, once; policy edits converge too; failure paths change nothing."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mdm_core.bus.events import DomainEvent, EventBus, EventType
from mdm_core.device.commands import DELIVERABLE_STATUSES, Command, NoSuchDevice
from mdm_core.device.convergence import ConvergenceService
from mdm_core.directory.sync import SourceUser, sync_source
from mdm_core.domain.model import DeviceStatus
from mdm_core.policy.errors import PolicySetUnavailable
from mdm_core.posture.model import Platform
from mdm_core.redis_backends.bus import RedisEventBus
from mdm_core.redis_backends.client import connect_redis
from mdm_core.runtime import MdmCore, build_core
from mdm_core.storage.sql.database import Database
from tests.helpers.enrolled import ROOT, core_config, enroll_device

MARKETING_INSTALLS = [
    "install_app com.example.brand-assets",
    "install_app com.example.campaigns",
    "install_app com.example.posture-agent",
    "install_certificate corp-wifi",
    "install_certificate marketing-share",
]


@pytest.fixture(params=["inprocess", "redis"])
def bus_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", target)
    return target


@pytest.fixture
def make(
    database: Database,
    tmp_path: Path,
    policy_dir: Path,
    bus_kind: str,
    request: pytest.FixtureRequest,
) -> Iterator:
    """Builds cores on one database: with Redis they share one stream (two processes)."""
    built: list[MdmCore] = []
    stream = f"test:conv:{uuid.uuid4().hex}"

    def factory() -> MdmCore:
        bus: EventBus | None = None
        if bus_kind == "redis":
            client = connect_redis(request.getfixturevalue("redis_url"))
            bus = RedisEventBus(client, stream=stream, block_ms=100)
        config = replace(core_config(database, tmp_path), policy_dir=policy_dir)
        core = build_core(config, bus=bus)
        built.append(core)
        return core

    yield factory
    for core in built:
        core.close()


def _user(group: str) -> list[SourceUser]:
    return [SourceUser(id="alice", username="alice", groups=(group,))]


def _pending(core: MdmCore, device_id: str) -> list[Command]:
    return [c for c in core.commands.for_device(device_id) if c.status in DELIVERABLE_STATUSES]


def _shown(commands: list[Command]) -> list[str]:
    return sorted(
        f"{c.type.value} {c.payload.get('app_id') or c.payload.get('name')}" for c in commands
    )


def _settle(*cores: MdmCore, until: int | None = None, device: str = "") -> None:
    """Relay and workers done; with a Redis bus delivery is asynchronous, so wait (bounded)
    for ``until`` commands on ``device``."""
    deadline = time.monotonic() + 10
    while True:
        for core in cores:
            core.relay.drain()
            assert core.convergence.wait_idle(timeout=10)
        if until is None or len(cores[0].commands.for_device(device)) >= until:
            break
        assert time.monotonic() < deadline, "convergence did not happen in time"
        time.sleep(0.05)
    time.sleep(0.3)  # a late duplicate (the other process) would land in this window
    for core in cores:
        core.relay.drain()
        assert core.convergence.wait_idle(timeout=10)


def test_a_membership_change_converges_through_the_bus_once(make) -> None:
    core, other = make(), make()  # two processes on one database (and, with Redis, one bus)
    dev = enroll_device(core, "alice", platform=Platform.LINUX)
    seen: list[DomainEvent] = []
    core.bus.subscribe(EventType.USER_GROUPS_CHANGED, seen.append)
    sync_source(core.storage, "import", _user("marketing"))
    _settle(core, other, until=5, device=dev.device_id)
    first = _pending(core, dev.device_id)
    assert _shown(first) == MARKETING_INSTALLS  # once, although both processes converged
    assert len(core.commands.for_device(dev.device_id)) == 5
    # the event again (at-least-once delivery), on both processes: nothing new
    assert seen and seen[0].payload["after"] == ["marketing"]
    core.bus.publish(seen[0])
    _settle(core, other)
    assert len(core.commands.for_device(dev.device_id)) == 5
    with core.storage.unit_of_work() as uow:
        audits = [r for r in uow.audit.recent(dev.device_id) if r.action == "device.converge"]
    assert audits and audits[0].actor == "system:convergence"


def test_moving_before_the_device_answered_cancels_our_stale_commands(make) -> None:
    core = make()
    dev = enroll_device(core, "alice", platform=Platform.LINUX)
    sync_source(core.storage, "import", _user("marketing"))
    _settle(core, until=5, device=dev.device_id)
    sync_source(core.storage, "import", _user("finance"))
    _settle(core)
    assert _shown(_pending(core, dev.device_id)) == [
        "install_app com.example.payroll",
        "install_app com.example.posture-agent",
        "install_app com.example.vpn",
        "install_certificate corp-wifi",
        "install_certificate finance-vpn",
    ]
    cancelled = [
        c for c in core.commands.for_device(dev.device_id) if c.status.value == "cancelled"
    ]
    assert _shown(cancelled) == [
        "install_app com.example.brand-assets",
        "install_app com.example.campaigns",
        "install_certificate marketing-share",
    ]


def test_a_policy_edit_converges_every_affected_device(make, policy_dir: Path) -> None:
    core = make()
    dev = enroll_device(core, "alice", platform=Platform.LINUX)
    sync_source(core.storage, "import", _user("marketing"))
    _settle(core, until=5, device=dev.device_id)
    config = policy_dir / "configuration.yaml"
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace(
            "install: [com.example.campaigns, com.example.brand-assets]",
            "install: [com.example.campaigns, com.example.brand-assets, com.example.social]",
        ),
        encoding="utf-8",
    )
    assert core.policies.reload().changed
    _settle(core)
    assert "install_app com.example.social" in _shown(_pending(core, dev.device_id))
    assert len(core.commands.for_device(dev.device_id)) == 6  # only the new app
    assert core.convergence.converge_all().queued == 0  # and a manual run adds nothing


def test_failure_paths_change_nothing(make) -> None:
    core = make()
    sync_source(core.storage, "import", _user("marketing"))
    _settle(core)
    with pytest.raises(NoSuchDevice):
        core.convergence.converge_device("no-such-device", trigger="t")
    assert core.convergence.converge_user("nobody", trigger="t").devices == []

    retired = enroll_device(core, "alice", platform=Platform.LINUX)
    with core.storage.unit_of_work() as uow:
        uow.devices.update_status(
            retired.device_id, DeviceStatus.RETIRED, reason="test", at=datetime.now(UTC)
        )
    outcome = core.convergence.converge_device(retired.device_id, trigger="t")
    assert outcome.skipped == "device_inactive" and outcome.queued == ()
    assert core.commands.for_device(retired.device_id) == []

    # an admin's pending command that works against the policies: left alone, reported
    dev = enroll_device(core, "alice", platform=Platform.LINUX)
    admins = core.commands.enqueue(
        dev.device_id, "remove_app", {"app_id": "com.example.campaigns"}, created_by="admin:bob"
    )
    conflicted = core.convergence.converge_device(dev.device_id, trigger="t")
    assert conflicted.plan is not None
    assert conflicted.plan.conflicts == (
        f"remove_app com.example.campaigns (command {admins.id} queued by admin:bob)",
    )
    assert "install_app com.example.campaigns" not in _shown(_pending(core, dev.device_id))
    assert core.commands.get(admins.id).status.value == "queued"  # type: ignore[union-attr]

    # no valid policy set: nothing is planned (never "remove everything")
    def unavailable():
        raise PolicySetUnavailable("broken")

    blind = ConvergenceService(core.storage, core.commands, unavailable)
    report = blind.converge_user("alice", trigger="t")
    assert {d.skipped for d in report.devices} == {"no_policy_set", "device_inactive"}
    assert report.queued == 0

    # a dry run queues nothing
    fresh = enroll_device(core, "alice", platform=Platform.LINUX)
    dry = core.convergence.converge_device(fresh.device_id, trigger="t", dry_run=True)
    assert dry.plan is not None and len(dry.plan.actions) == 5
    assert core.commands.for_device(fresh.device_id) == []


def test_a_malformed_event_is_ignored(make) -> None:
    core = make()
    core.convergence.on_user_groups_changed(
        DomainEvent(type=EventType.USER_GROUPS_CHANGED, subject="", payload={"user_id": 7})
    )
    assert core.convergence.wait_idle(timeout=5)
