"""The offboarding admin API and ``posture offboard`` over real HTTP (werkzeug server).

Roles: helpdesk may read a user's status, only admin may start, cancel or reinstate; the
shared admin token opens nothing here; bad input is refused and changes nothing (asserted on
the database); every change is audited with the named admin.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import func, select
from werkzeug.serving import make_server

from mdm_core.posture.model import Ownership, Platform
from mdm_core.runtime import MdmCore
from mdm_core.storage.sql.tables import audit_log, offboarding_jobs, user_blocks
from posture_gateway.admin.principals import Role
from posture_gateway.admin.service import add_admin
from posture_gateway.app import create_app
from posture_gateway.cli.main import cli
from posture_gateway.settings import Settings
from tests.helpers.enrolled import enroll_device
from tests.unit.mdm_core.offboarding.helpers import ack, add_user, check_in

ROOT = Path(__file__).resolve().parents[3]
SHARED = "s" * 40
PATH = "/admin/api/offboarding"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = create_app(
        Settings(
            data_dir=tmp_path,
            dev_mode=True,
            policy_dir=ROOT / "policies",
            admin_token=SHARED,  # type: ignore[arg-type]
        )
    )
    try:
        yield app
    finally:
        app.extensions["posture"].core.close()


def core_of(app: Flask) -> MdmCore:
    core = app.extensions["posture"].core
    assert isinstance(core, MdmCore)
    return core


@pytest.fixture
def tokens(app: Flask) -> dict[str, str]:
    storage = core_of(app).storage
    _, admin = add_admin(storage, "ada", Role.ADMIN, actor="operator:test")
    _, helpdesk = add_admin(storage, "hal", Role.HELPDESK, actor="operator:test")
    return {"admin": admin.value, "helpdesk": helpdesk.value}


@pytest.fixture
def devices(app: Flask) -> dict[str, str]:
    core = core_of(app)
    add_user(core.directory, "alice", ("staff",))
    byod = enroll_device(core, "alice", ownership=Ownership.BYOD, platform=Platform.IOS)
    corp = enroll_device(core, "alice", ownership=Ownership.CORPORATE, platform=Platform.MACOS)
    return {"byod": byod.device_id, "corp": corp.device_id}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def counts(app: Flask) -> tuple[int, int]:
    with core_of(app).database.engine.connect() as conn:
        jobs = conn.execute(select(func.count()).select_from(offboarding_jobs)).scalar()
        blocks = conn.execute(select(func.count()).select_from(user_blocks)).scalar()
    return int(jobs or 0), int(blocks or 0)


def test_admin_starts_helpdesk_reads_and_the_audit_names_the_admin(
    app: Flask, tokens: dict[str, str], devices: dict[str, str]
) -> None:
    client = app.test_client()
    started = client.post(
        PATH, json={"user_id": "alice", "reason": "left"}, headers=bearer(tokens["admin"])
    )
    assert started.status_code == 200, started.json
    job = started.json
    assert job is not None and job["status"] == "running" and job["actor"] == "admin:ada"
    assert started.headers["Cache-Control"] == "no-store"
    read = client.get(PATH, query_string={"user_id": "alice"}, headers=bearer(tokens["helpdesk"]))
    assert read.status_code == 200
    body = read.json
    assert body is not None and body["logins_blocked"] is True
    [report] = body["jobs"]
    actions = {d["device_id"]: (d["action"], d["state"]) for d in report["devices"]}
    assert actions == {
        devices["byod"]: ("selective_wipe", "pending"),
        devices["corp"]: ("lock_and_retire", "pending"),
    }
    for device in report["devices"]:
        [command] = device["commands"]
        assert command["status"] == "queued" and "queued" in command["times"]
    with core_of(app).database.engine.connect() as conn:
        actors = conn.execute(
            select(audit_log.c.actor).where(audit_log.c.action == "offboarding.requested")
        ).all()
    assert [a.actor for a in actors] == ["admin:ada"]


def test_helpdesk_may_not_start_cancel_or_reinstate_and_nothing_changes(
    app: Flask, tokens: dict[str, str], devices: dict[str, str]
) -> None:
    client = app.test_client()
    hal = bearer(tokens["helpdesk"])
    for path, body in (
        (PATH, {"user_id": "alice", "reason": "x"}),
        (f"{PATH}/{'0' * 32}/cancel", {"reason": "x"}),
        (f"{PATH}/reinstate", {"user_id": "alice", "reason": "x"}),
    ):
        refused = client.post(path, json=body, headers=hal)
        assert refused.status_code == 403 and refused.json["error"] == "forbidden"  # type: ignore[index]
    assert counts(app) == (0, 0)
    # The shared token opens none of these routes, not even the read.
    for method, path in (("get", PATH + "?user_id=alice"), ("post", PATH)):
        answer = getattr(client, method)(path, json={}, headers=bearer(SHARED))
        assert answer.status_code == 401
    assert client.get(PATH, query_string={"user_id": "alice"}).status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"user_id": "alice"},  # no reason
        {"user_id": "bad user", "reason": "x"},
        {"user_id": "alice", "reason": "x", "extra": 1},
        {"user_id": "alice", "reason": "x", "effective_at": "tomorrow"},
        {"user_id": "alice", "reason": "x", "effective_at": "2030-01-01T00:00:00"},  # no zone
        {"user_id": 7, "reason": "x"},
        {"user_id": "nobody", "reason": "x"},  # unknown user: 404
    ],
)
def test_bad_start_bodies_are_refused_and_change_nothing(
    app: Flask, tokens: dict[str, str], devices: dict[str, str], body: Any
) -> None:
    answer = app.test_client().post(
        PATH,
        data=json.dumps(body) if body is not None else "not json",
        content_type="application/json",
        headers=bearer(tokens["admin"]),
    )
    assert answer.status_code in (400, 404)
    assert set(answer.json or {}) == {"error", "reason"}
    assert counts(app) == (0, 0)


def test_cancel_a_scheduled_job_and_refuse_a_started_one(
    app: Flask, tokens: dict[str, str], devices: dict[str, str]
) -> None:
    client = app.test_client()
    ada = bearer(tokens["admin"])
    later = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    job = client.post(
        PATH, json={"user_id": "alice", "reason": "leaves", "effective_at": later}, headers=ada
    ).json
    assert job is not None and job["status"] == "scheduled"
    cancelled = client.post(f"{PATH}/{job['id']}/cancel", json={"reason": "stays"}, headers=ada)
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"  # type: ignore[index]
    now_job = client.post(PATH, json={"user_id": "alice", "reason": "left"}, headers=ada).json
    assert now_job is not None
    refused = client.post(f"{PATH}/{now_job['id']}/cancel", json={"reason": "x"}, headers=ada)
    assert refused.status_code == 409 and refused.json["error"] == "offboarding_started"  # type: ignore[index]
    unknown = client.post(f"{PATH}/{'f' * 32}/cancel", json={"reason": "x"}, headers=ada)
    assert unknown.status_code == 404
    bad = client.post(f"{PATH}/not-a-job/cancel", json={"reason": "x"}, headers=ada)
    assert bad.status_code == 404
    reinstated = client.post(
        f"{PATH}/reinstate", json={"user_id": "alice", "reason": "back"}, headers=ada
    )
    assert reinstated.status_code == 200
    assert counts(app)[1] == 0
    again = client.post(
        f"{PATH}/reinstate", json={"user_id": "alice", "reason": "back"}, headers=ada
    )
    assert again.status_code == 404 and again.json["error"] == "user_not_offboarded"  # type: ignore[index]


@pytest.fixture
def server(app: Flask) -> Iterator[str]:
    http = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.server_port}"
    finally:
        http.shutdown()
        thread.join(5)


def test_the_cli_over_http(
    app: Flask, tokens: dict[str, str], devices: dict[str, str], server: str
) -> None:
    runner = CliRunner()
    env = {"POSTURE_ADMIN_URL": server, "POSTURE_ADMIN_TOKEN": tokens["admin"], "COLUMNS": "300"}
    started = runner.invoke(cli, ["offboard", "start", "alice", "--reason", "left"], env=env)
    assert started.exit_code == 0, started.output
    core = core_of(app)
    [lock] = check_in(core, devices["corp"])
    ack(core, lock)
    core.offboarding.run_due()
    shown = runner.invoke(cli, ["offboard", "status", "alice"], env=env, terminal_width=250)
    assert shown.exit_code == 0, shown.output
    assert "blocked" in shown.output and devices["corp"] in shown.output
    assert "retired" in shown.output and "lock acknowledged" in shown.output
    as_json = runner.invoke(cli, ["offboard", "status", "alice", "--json"], env=env)
    data = json.loads(as_json.output)
    corp = next(d for d in data["jobs"][0]["devices"] if d["device_id"] == devices["corp"])
    assert corp["state"] == "retired"
    assert set(corp["commands"][0]["times"]) == {"queued", "delivered", "acknowledged"}
    helpdesk = {**env, "POSTURE_ADMIN_TOKEN": tokens["helpdesk"]}
    refused = runner.invoke(cli, ["offboard", "reinstate", "alice", "--reason", "x"], env=helpdesk)
    assert refused.exit_code != 0 and "403 forbidden" in refused.output
    ok = runner.invoke(cli, ["offboard", "reinstate", "alice", "--reason", "back"], env=env)
    assert ok.exit_code == 0, ok.output
    job_id = data["jobs"][0]["id"]
    cancel = runner.invoke(cli, ["offboard", "cancel", job_id, "--reason", "x"], env=env)
    assert cancel.exit_code != 0 and "409 offboarding_started" in cancel.output
