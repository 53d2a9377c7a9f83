"""Two gateway processes on one database: a degradation is never missed.

Process A takes the device's check-ins, process B answers ``POST /api/v1/decision``. B's read
model is warm (it just allowed the device). A check-in on A degrades the device; the very
next decision on B, asked after A's check-in response returned, is ``block``: B checks the
device's version in the database per decision, so correctness does not depend on an event
reaching B. On the embedded default (SQLite file shared by both) and on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from mdm_core.posture.model import Ownership, Platform
from mdm_core.simulator.reports import DeviceTraits, native_reports
from mdm_core.storage.directory import DirectoryUser
from posture_gateway.app import create_app
from posture_gateway.integrations.state import integrations
from posture_gateway.settings import Settings
from tests.conftest import _fresh_postgres_db
from tests.e2e.decision_server import POLICY_DIR
from tests.helpers.enrolled import EnrolledDevice, enroll_device
from tests.services import free_port
from tests.unit.posture_gateway.integrations.test_posture_api import issue

ROOT = Path(__file__).resolve().parents[2]


def _start(data_dir: Path, port: int, public_url: str, db: str | None) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "tests.e2e.decision_server", str(data_dir), str(port)]
    args += [public_url] + ([db] if db else [])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", line
    return proc


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None  # the embedded default: data_dir/posture.sqlite3, shared by both
    return _fresh_postgres_db(request.getfixturevalue("postgres_server_url"))


@pytest.fixture
def stack(tmp_path: Path, database_url: str | None) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path / "data"
    port_a, port_b = free_port(), free_port()
    public_url = f"http://127.0.0.1:{port_a}"
    # The test's own app on the same data directory and database: set-up only (never serves).
    setup = create_app(
        Settings(
            data_dir=data_dir,
            database_url=database_url,
            public_url=public_url,
            policy_dir=POLICY_DIR,
            dev_mode=True,
        )
    )
    a = _start(data_dir, port_a, public_url, database_url)
    b = _start(data_dir, port_b, public_url, database_url)
    try:
        yield {
            "setup": setup,
            "a": f"http://127.0.0.1:{port_a}",
            "b": f"http://127.0.0.1:{port_b}",
            "public_url": public_url,
        }
    finally:
        for proc in (a, b):
            proc.terminate()
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()
        integrations(setup).close()
        setup.extensions["posture"].core.close()


def _check_in(stack: dict[str, Any], dev: EnrolledDevice, traits: DeviceTraits) -> None:
    for fmt, report in native_reports("android", "S-" + dev.device_id[:6], "corporate", traits):
        body = json.dumps({"format": fmt, "report": report}).encode()
        proof = dev.request_proof("POST", stack["public_url"] + "/mdm/v1/checkin", body)
        res = httpx.post(
            stack["a"] + "/mdm/v1/checkin",
            content=body,
            headers={"Device-Proof": proof, "Content-Type": "application/json"},
        )
        assert res.status_code == 200, res.text


def _decide_on_b(stack: dict[str, Any], dev: EnrolledDevice, token: str) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {token}"}
    nonce = httpx.post(stack["b"] + "/api/v1/nonce", headers=auth).json()
    body = {
        "user": "alice",
        "client_id": "payroll",
        "device_id": dev.device_id,
        "device_proof": dev.login_proof(audience=nonce["audience"], nonce=nonce["nonce"]),
    }
    res = httpx.post(stack["b"] + "/api/v1/decision", json=body, headers=auth)
    assert res.status_code == 200, res.text
    return dict(res.json())


def test_a_degrading_check_in_on_a_is_denied_by_b_at_once(stack: dict[str, Any]) -> None:
    core = stack["setup"].extensions["posture"].core
    core.directory.upsert_user(
        DirectoryUser(
            id="u-alice", username="alice", active=True, source="local",
            updated_at=datetime.now(UTC),
        )
    )  # fmt: skip
    dev = enroll_device(core, "u-alice", ownership=Ownership.CORPORATE, platform=Platform.ANDROID)
    token = issue(stack["setup"])
    _check_in(stack, dev, DeviceTraits())
    for _ in range(3):  # B's read model is warm: device state, user, token all cached
        assert _decide_on_b(stack, dev, token)["outcome"] in {"allow", "warn"}
    _check_in(stack, dev, DeviceTraits(jailbroken=True))  # returned: committed on A
    answer = _decide_on_b(stack, dev, token)
    assert answer["outcome"] == "block", answer
    codes = {(r["code"], r["policy_id"]) for r in answer["reasons"]}
    assert ("device_quarantined", None) in codes  # the device record (status), refetched
    assert ("rule_failed", "baseline-critical") in codes  # the NEW posture, not the cached one
    # ... and it stays denied (the refetched state is cached at the new version).
    assert _decide_on_b(stack, dev, token)["outcome"] == "block"
