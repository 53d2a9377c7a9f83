"""The offboarding job survives kill -9 at any step: a real ``posture serve`` (default flags,
PostgreSQL + Redis) works through 300 users x 2 devices whose scheduled offboardings fall due
at once; the server is SIGKILLed while ``run_due`` fires them, restarted, SIGKILLed again
while it retires the acknowledged devices, restarted; in the end every job is done, every
device got exactly ONE offboarding command (a selective wipe for BYOD, a lock for corporate)
and was retired once, and the audit has every step of every job exactly once.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select, update

from mdm_core.domain.model import DeviceStatus
from mdm_core.posture.model import Ownership, Platform
from mdm_core.runtime import MdmCore
from mdm_core.storage.sql.tables import audit_log, commands, devices, offboarding_jobs
from tests.e2e.cluster import Cluster, Instance, _serve, cluster, wait_ready
from tests.helpers.enrolled import enroll_device

USERS = 300
INTERVAL = {"offboarding": {"interval": "1s"}}


def _count(core: MdmCore, status: str) -> int:
    with core.database.engine.connect() as conn:
        q = (
            select(func.count())
            .select_from(offboarding_jobs)
            .where(offboarding_jobs.c.status == status)
        )
        return int(conn.execute(q).scalar() or 0)


def _wait(what: str, done: Callable[[], bool], timeout: float, c: Cluster) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"{what} not reached in {timeout} s\n{c.logs()}"
        time.sleep(0.05)


def _kill(c: Cluster) -> None:
    instance = c.instances[0]
    os.killpg(instance.proc.pid, signal.SIGKILL)
    instance.proc.wait(timeout=10)


def _restart(c: Cluster, tmp: Path) -> Instance:
    port = int(c.instances[0].url.rsplit(":", 1)[1])
    c.instances[0] = _serve(c.config, port, tmp)
    wait_ready(c.instances[0])
    return c.instances[0]


def test_kill_9_mid_job_loses_nothing_and_repeats_nothing(tmp_path: Path) -> None:
    with cluster(tmp_path, instances=1, extra=INTERVAL) as c:
        core = c.core()
        try:
            owners: dict[str, str] = {}
            for i in range(USERS):
                user = f"leaver-{i:03d}"
                for ownership, platform in (
                    (Ownership.BYOD, Platform.ANDROID),
                    (Ownership.CORPORATE, Platform.ANDROID),
                ):
                    owners[
                        enroll_device(core, user, ownership=ownership, platform=platform).device_id
                    ] = user
                with core.storage.unit_of_work() as uow:
                    core.offboarding.request(
                        uow, user_id=user, trigger="hr:generic", source_ref=f"emp-{i}",
                        effective_at=datetime.now(UTC) + timedelta(days=1), actor="hr:generic",
                        username=user,
                    )  # fmt: skip
            assert _count(core, "scheduled") == USERS
            # The effective date arrives for all of them at once.
            with core.database.transaction() as conn:
                conn.execute(
                    update(offboarding_jobs).values(
                        effective_at=datetime.now(UTC) - timedelta(seconds=1)
                    )
                )
            # kill -9 while the served worker fires them.
            _wait("first jobs fired", lambda: _count(core, "running") >= 10, 60, c)
            _kill(c)
            fired_at_kill = _count(core, "running")
            _restart(c, tmp_path)
            _wait("every job fired", lambda: _count(core, "scheduled") == 0, 120, c)
            # Every device answers its command (as its next check-in would).
            now = datetime.now(UTC)
            for device_id in owners:
                with core.storage.unit_of_work() as uow:
                    delivered = core.commands.deliver(uow, device_id, now=now, limit=10)
                for command in delivered:
                    core.commands.record_result(device_id, command.id, "acknowledged", now=now)
            # kill -9 again while it retires them, then let it finish.
            _wait("first jobs done", lambda: _count(core, "done") >= 5, 120, c)
            _kill(c)
            done_at_kill = _count(core, "done")
            _restart(c, tmp_path)
            _wait("every job done", lambda: _count(core, "done") == USERS, 180, c)
            _assert_exactly_once(core, owners)
            # Both kills hit work in progress (not before it started, not after it ended).
            assert 0 < fired_at_kill < USERS and 0 < done_at_kill < USERS, (
                fired_at_kill,
                done_at_kill,
            )
        finally:
            core.close()


def _assert_exactly_once(core: MdmCore, owners: dict[str, str]) -> None:
    with core.database.engine.connect() as conn:
        sent = conn.execute(
            select(commands.c.device_id, commands.c.type, commands.c.status).where(
                commands.c.idempotency_key.like("offboarding:%")
            )
        ).all()
        statuses = dict(
            conn.execute(
                select(devices.c.id, devices.c.status).where(devices.c.id.in_(owners))
            ).all()
        )
        ownership = dict(
            conn.execute(
                select(devices.c.id, devices.c.ownership).where(devices.c.id.in_(owners))
            ).all()
        )
        steps = conn.execute(
            select(audit_log.c.action, audit_log.c.subject, audit_log.c.actor).where(
                audit_log.c.action.like("offboarding.%")
            )
        ).all()
        revokes = conn.execute(
            select(audit_log.c.subject).where(audit_log.c.action == "device.revoke")
        ).all()
    per_device = Counter(d for d, _, _ in sent)
    assert set(per_device) == set(owners) and set(per_device.values()) == {1}
    for device_id, kind, status in sent:
        expected = "selective_wipe" if ownership[device_id] == "byod" else "lock"
        assert (kind, status) == (expected, "acknowledged")
    assert set(statuses.values()) == {DeviceStatus.RETIRED.value}
    assert Counter(r.subject for r in revokes) == Counter(dict.fromkeys(owners, 1))
    by_action = Counter(s.action for s in steps)
    assert by_action == {
        "offboarding.requested": USERS,
        "offboarding.started": USERS,
        "offboarding.device_queued": 2 * USERS,
        "offboarding.device_retired": 2 * USERS,
        "offboarding.done": USERS,
    }, by_action
    # Each device's steps once: queued then retired, by its job's actor.
    per_subject = Counter(
        (s.action, s.subject) for s in steps if s.action.startswith("offboarding.device")
    )
    assert set(per_subject.values()) == {1}
