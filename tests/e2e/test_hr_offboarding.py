"""Issue 12 end to end: a signed BambooHR webhook over HTTP offboards a user whose BYOD device
runs the real reference agent, on the embedded default and on PostgreSQL + Redis.

:func:`tests.e2e.hr_stack.hr_deployment` runs ``posture serve`` with its default flags and an
``hr`` section; the BYOD device is enrolled by ``posture agent enroll`` and holds two apps and
a certificate the MDM installed; the user signs in (the device proof from ``posture agent
serve-loopback``) and holds an SSO session and live tokens. Then BambooHR says the employee is
inactive, and:

- the tokens are revoked at once (introspection says inactive, the refresh is refused) and the
  SSO session no longer signs the browser in;
- a ``selective_wipe`` naming only the MDM's apps and certificates is queued, delivered at the
  agent's next ``posture agent checkin`` and acknowledged; the personal files beside the agent's
  state are untouched;
- the job is ``done`` (``GET /admin/api/offboarding?user_id=``), the audit trail has every
  step, and the redelivered webhook (same bytes) changes nothing.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from mdm_core.storage.sql.tables import audit_log, commands, offboarding_jobs
from posture_gateway.hr.tables import hr_deliveries
from tests.conftest import _fresh_postgres_db
from tests.e2e.hr_stack import (
    APPS,
    CERTIFICATES,
    EMAIL,
    REDIRECT_URI,
    USER_ID,
    HrDeployment,
    authorize_again,
    code_flow,
    hr_deployment,
    introspect,
    refresh,
)

__all__: list[str] = []

pytestmark = [pytest.mark.slow]

#: The app the shipped configuration policy installs on every device.
POLICY_APP = "com.example.posture-agent"


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


def _counts(dep: HrDeployment) -> dict[str, int]:
    core = dep.core()
    try:
        with core.database.engine.connect() as conn:
            return {
                name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for name, t in (
                    ("hr_deliveries", hr_deliveries),
                    ("jobs", offboarding_jobs),
                    ("commands", commands),
                    ("audit", audit_log),
                )
            }
    finally:
        core.close()


def _device_commands(dep: HrDeployment) -> list[Any]:
    core = dep.core()
    try:
        with core.storage.unit_of_work() as uow:
            return uow.commands.for_device(dep.device_id)
    finally:
        core.close()


def _audit_actions(dep: HrDeployment) -> list[tuple[str, str, str]]:
    core = dep.core()
    try:
        with core.database.engine.connect() as conn:
            rows = conn.execute(select(audit_log).order_by(audit_log.c.id))
            return [(r.actor, r.action, r.outcome) for r in rows]
    finally:
        core.close()


def _job_done(dep: HrDeployment, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = dep.admin_get("/admin/api/offboarding", user_id=USER_ID)
        if status["jobs"] and status["jobs"][0]["status"] == "done":
            return status
        assert time.monotonic() < deadline, f"{status}\n{dep.logs()}"
        time.sleep(0.5)


def test_signed_bamboohr_webhook_to_acknowledged_selective_wipe(
    tmp_path: Path, backend: dict[str, str]
) -> None:
    with hr_deployment(tmp_path, backend) as dep:
        # The device holds what the MDM installed, and its owner's own files beside it.
        installed = (dep.state_dir / "installed.json").read_text()
        assert all(a in installed for a in APPS + CERTIFICATES), installed
        managed = dep.state_dir / "managed"
        managed.mkdir(exist_ok=True)
        (managed / "mail-cache.db").write_bytes(b"work mail")
        personal = tmp_path / "home" / "Pictures"
        personal.mkdir(parents=True)
        (personal / "holiday.jpg").write_bytes(b"\xff\xd8 personal photo")
        (dep.state_dir.parent / "notes.txt").write_text("my own notes", encoding="utf-8")

        tokens = code_flow(dep)
        assert introspect(dep, tokens.access_token) is True

        employee = {
            "id": "4242",
            "action": "Updated",
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000"),
            "changedFields": ["Status"],
            "fields": {"status": "Inactive", "workEmail": EMAIL, "firstName": "Alice"},
        }
        answer = dep.bamboohr([employee])
        assert answer.status_code == 200, answer.text + dep.logs()
        (event,) = answer.json()["events"]
        assert event["outcome"] == "offboarding_started", event
        assert event["user_id"] == USER_ID

        # At once: the tokens and the session end.
        assert introspect(dep, tokens.access_token) is False
        refused = refresh(dep, tokens.refresh_token)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
        again = authorize_again(dep, tokens)
        assert not (
            again.status_code in (302, 303) and again.headers["Location"].startswith(REDIRECT_URI)
        ), "the SSO session still signs the user in"

        # The selective wipe is queued for the BYOD device, naming only managed data.
        (wipe,) = [c for c in _device_commands(dep) if c.type.value == "selective_wipe"]
        assert wipe.status.value == "queued"
        assert not [c for c in _device_commands(dep) if c.type.value == "wipe"]
        assert wipe.payload["work_container"] is True
        # what the MDM installed, plus what the configuration policy in force installs
        # (policies/configuration.yaml: everyone gets the posture agent app); nothing else
        assert sorted(wipe.payload["apps"]) == sorted((*APPS, POLICY_APP))
        assert sorted(wipe.payload["certificates"]) == sorted(CERTIFICATES)

        # The agent's next check-in gets it and acknowledges it.
        dep.checkin()
        (wipe,) = [c for c in _device_commands(dep) if c.type.value == "selective_wipe"]
        assert wipe.status.value == "acknowledged", wipe
        # Only managed data is gone: the work container and the MDM's apps and certificates.
        assert not managed.exists()
        left = json.loads((dep.state_dir / "installed.json").read_text())
        assert not set(left.get("apps", [])) & set(APPS), left
        assert not set(left.get("certificates", [])) & set(CERTIFICATES), left
        assert (dep.state_dir / "enrollment.json").exists()  # the agent itself stays
        assert (personal / "holiday.jpg").read_bytes() == b"\xff\xd8 personal photo"
        assert (dep.state_dir.parent / "notes.txt").read_text(encoding="utf-8") == "my own notes"

        status = _job_done(dep)
        (job,) = status["jobs"]
        assert job["trigger"] == "hr:bamboohr" and job["source_ref"] == event["source_ref"]
        assert status["logins_blocked"] is True
        (device,) = job["devices"]
        assert (device["device_id"], device["action"]) == (dep.device_id, "selective_wipe")
        assert device["state"] == "retired"

        actions = _audit_actions(dep)
        steps = [a for _, a, _ in actions]
        for step in (
            "hr.employee_event",  # the HR event, by hr:bamboohr
            "offboarding.requested",
            "offboarding.started",
            "credentials.revoked",  # sessions and tokens
            "command.queued",  # the selective wipe
            "offboarding.device_queued",
        ):
            assert step in steps, (step, steps)
        assert ("hr:bamboohr", "hr.employee_event", "offboarding_started") in actions

        # BambooHR redelivers the same bytes: the stored outcome, nothing else.
        before = _counts(dep)
        replay = dep.bamboohr([employee])
        assert replay.status_code == 200
        assert replay.json()["replayed"] is True
        assert replay.json()["events"] == answer.json()["events"]
        assert _counts(dep) == before
