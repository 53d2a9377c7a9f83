"""Device administration as it ships, on the embedded default and on PostgreSQL + Redis:
``posture admin add`` (two admins, one helpdesk), ``posture serve`` with its default flags, a
device enrolled by the real agent, then ``posture device list|show|lock|commands|wipe|approve``
as subprocesses against the server, and the agent's next check-ins receiving the lock and
the wipe (approved by a second admin: the two-person rule) and acknowledging them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _fresh_postgres_db
from tests.e2e.deployment import POSTURE, Deployment, _env, _run, deployment
from tests.e2e.live_server import POLICY_DIR

pytestmark = [pytest.mark.slow]


@pytest.fixture(
    params=[
        "embedded",
        pytest.param("postgres+redis", marks=[pytest.mark.postgres, pytest.mark.redis]),
    ]
)
def backend(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "embedded":
        return {}
    return {
        "database_url": _fresh_postgres_db(request.getfixturevalue("postgres_server_url")),
        "redis_url": request.getfixturevalue("redis_url"),
    }


def _two_person_policies(tmp: Path) -> Path:
    target = tmp / "policies"
    shutil.copytree(POLICY_DIR, target)
    offboarding = target / "offboarding.yaml"
    offboarding.write_text(
        offboarding.read_text(encoding="utf-8") + "two_person_rule: true\n", encoding="utf-8"
    )
    return target


def _device(dep: Deployment, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**dep.env, "POSTURE_ADMIN_URL": dep.url, "POSTURE_ADMIN_TOKEN": token, "COLUMNS": "250"}
    return subprocess.run(
        [*POSTURE, "device", *args], env=env, capture_output=True, text=True, timeout=60
    )


def _ok_json(dep: Deployment, token: str, *args: str) -> Any:
    done = _device(dep, token, *args, "--json")
    assert done.returncode == 0, f"posture device {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)


def _checkin(dep: Deployment) -> None:
    agent_env = _env({"POSTURE_AGENT_HOST_ROOT": str(dep.host.root)})
    _run(["agent", "checkin", "--state-dir", str(dep.tmp / "agent-state")], agent_env)


def test_admins_lock_and_two_person_wipe_over_the_shipped_commands(
    tmp_path: Path, backend: dict[str, str]
) -> None:
    with deployment(tmp_path, None, backend, policy_dir=_two_person_policies(tmp_path)) as dep:
        config = ["--config", str(dep.config)]
        tokens = {
            name: _run([*config, "admin", "add", name, "--role", role], dep.env).strip()
            for name, role in (("ada", "admin"), ("bob", "admin"), ("hal", "helpdesk"))
        }
        assert all(t.startswith("pga_") for t in tokens.values())
        listed_admins = _run([*config, "admin", "list"], {**dep.env, "COLUMNS": "200"})
        assert "Admins (3)" in listed_admins and tokens["ada"] not in listed_admins

        device_id = dep.device_id
        listed = _ok_json(dep, tokens["hal"], "list")
        assert [d["id"] for d in listed["devices"]] == [device_id]
        table = _device(dep, tokens["hal"], "list")
        assert table.returncode == 0 and device_id in table.stdout
        shown = _ok_json(dep, tokens["hal"], "show", device_id)
        assert shown["device"]["ownership"] == "corporate" and shown["posture"] is not None

        # the helpdesk locks; it may not wipe (refused by the server, one line, exit 1)
        lock = _ok_json(
            dep,
            tokens["hal"],
            "lock",
            device_id,
            "--message",
            "Found? Call",
            "--phone",
            "+1 555 0100",
        )
        assert lock["command"]["status"] == "queued"
        refused = _device(dep, tokens["hal"], "wipe", device_id, "--reason", "lost")
        assert refused.returncode == 1
        assert "403 forbidden" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
        bad_token = _device(dep, "pga_0123456789abcdef_" + "A" * 43, "list")
        assert bad_token.returncode == 1 and "401 unauthorized" in bad_token.stderr

        _checkin(dep)  # the agent's next check-in receives the lock and acknowledges it
        commands = _ok_json(dep, tokens["hal"], "commands", device_id)["commands"]
        (locked,) = commands
        assert locked["type"] == "lock" and locked["status"] == "acknowledged"
        assert locked["payload"] == {"message": "Found? Call", "phone_number": "+1 555 0100"}
        assert locked["delivered_at"] and locked["acknowledged_at"]
        assert [t["to"] for t in locked["transitions"]] == ["queued", "delivered", "acknowledged"]
        rich = _device(dep, tokens["hal"], "commands", device_id)
        assert rich.returncode == 0 and "acknowledged" in rich.stdout and "lock" in rich.stdout

        # a full wipe needs a second, different admin
        asked = _ok_json(dep, tokens["ada"], "wipe", device_id, "--reason", "stolen")[
            "wipe_request"
        ]
        assert asked["status"] == "pending_approval" and asked["command_id"] is None
        own = _device(dep, tokens["ada"], "approve", asked["id"])
        assert own.returncode == 1 and "409 second_admin_required" in own.stderr
        approved = _ok_json(dep, tokens["bob"], "approve", asked["id"])["wipe_request"]
        assert approved["status"] == "queued"
        assert approved["approvals"] == ["admin:ada", "admin:bob"]

        _checkin(dep)  # delivered at the next check-in, acknowledged by the agent
        commands = _ok_json(dep, tokens["hal"], "commands", device_id)["commands"]
        wipe = next(c for c in commands if c["type"] == "wipe")
        assert wipe["id"] == approved["command_id"] and wipe["status"] == "acknowledged"

        # the audit trail names who did what, refusals included
        core = dep.core()
        try:
            with core.storage.unit_of_work() as uow:
                trail = {
                    (e.actor, e.action, e.outcome) for e in uow.audit.recent(device_id, limit=200)
                }
        finally:
            core.close()
        assert ("admin:hal", "command.queued", "ok") in trail
        assert ("admin:hal", "admin.admin_devices.wipe_view", "refused") in trail
        assert ("admin:ada", "wipe.requested", "ok") in trail
        assert ("admin:bob", "wipe.approved", "ok") in trail
