"""An app with both HR webhooks on, a directory user with a BYOD device, on SQLite and on
a real PostgreSQL; helpers to sign and send deliveries and to count what was written."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from mdm_core.posture.model import Ownership, Platform
from mdm_core.runtime import MdmCore
from mdm_core.storage.directory import DirectoryUser
from mdm_core.storage.sql.tables import audit_log, commands, offboarding_jobs
from posture_gateway.admin.principals import Role
from posture_gateway.admin.service import add_admin
from posture_gateway.app import create_app
from posture_gateway.hr.signature import sign
from posture_gateway.hr.tables import hr_deliveries
from posture_gateway.settings import Settings
from tests.helpers.enrolled import EnrolledDevice, enroll_device

ROOT = Path(__file__).resolve().parents[3]
BAMBOO_KEY = "bamboo-private-key-" + "b" * 24
GENERIC_KEY = "generic-hr-secret-" + "g" * 24
EMAIL = "alice@example.com"


@dataclass
class HrApp:
    app: Flask
    core: MdmCore
    device: EnrolledDevice
    helpdesk_token: str

    @property
    def client(self) -> FlaskClient:
        return self.app.test_client()

    def counts(self) -> dict[str, int]:
        """Rows a delivery may write: its records, offboarding jobs, device commands."""
        with self.core.database.engine.connect() as conn:
            return {
                name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
                for name, table in (
                    ("hr_deliveries", hr_deliveries),
                    ("jobs", offboarding_jobs),
                    ("commands", commands),
                )
            }

    def audit(self, action: str) -> list[Any]:
        with self.core.database.engine.connect() as conn:
            return list(conn.execute(select(audit_log).where(audit_log.c.action == action)))

    def jobs(self) -> list[Any]:
        with self.core.database.engine.connect() as conn:
            return list(
                conn.execute(select(offboarding_jobs).order_by(offboarding_jobs.c.created_at))
            )


def body_of(employees: list[dict[str, Any]]) -> bytes:
    return json.dumps({"employees": employees}).encode()


def employee(eid: str = "101", **fields: Any) -> dict[str, Any]:
    return {
        "id": eid,
        "action": "Updated",
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "changedFields": list(fields),
        "fields": fields,
    }


def post_bamboo(
    client: FlaskClient,
    body: bytes,
    *,
    ts: int | None = None,
    key: str = BAMBOO_KEY,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> TestResponse:
    stamp = str(int(time.time()) if ts is None else ts)
    sent = {
        "X-BambooHR-Timestamp": stamp,
        "X-BambooHR-Signature": sign(key.encode(), body, stamp),
    }
    sent.update(headers or {})
    return client.post(
        "/hr/v1/webhooks/bamboohr",
        data=body,
        headers={k: v for k, v in sent.items() if v is not None},
        content_type=content_type,
    )


def post_generic(
    client: FlaskClient, payload: dict[str, Any] | bytes, *, key: str = GENERIC_KEY
) -> TestResponse:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    stamp = str(int(time.time()))
    return client.post(
        "/hr/v1/webhooks/generic",
        data=body,
        headers={
            "X-Posture-Timestamp": stamp,
            "X-Posture-Signature": sign(key.encode(), body, stamp),
        },
        content_type="application/json",
    )


def add_user(core: MdmCore, user_id: str, username: str, email: str | None) -> None:
    core.directory.upsert_user(
        DirectoryUser(
            id=user_id,
            username=username,
            active=True,
            source="local",
            updated_at=datetime.now(UTC),
            email=email,
        )
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def hr_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HrApp]:
    database_url = None
    if request.param == "postgres":
        from tests.conftest import _fresh_postgres_db

        database_url = _fresh_postgres_db(request.getfixturevalue("postgres_server_url"))
    app = create_app(
        Settings.model_validate(
            {
                "data_dir": tmp_path / "data",
                "database_url": database_url,
                "dev_mode": True,
                "policy_dir": ROOT / "policies",
                "hr": {"bamboohr": {"secret": BAMBOO_KEY}, "generic": {"secret": GENERIC_KEY}},
            }
        )
    )
    core: MdmCore = app.extensions["posture"].core
    add_user(core, "u-alice", "alice", EMAIL)
    device = enroll_device(core, "u-alice", ownership=Ownership.BYOD, platform=Platform.IOS)
    _, token = add_admin(core.storage, "helen", Role.HELPDESK, actor="operator:test")
    try:
        yield HrApp(app, core, device, token.value)
    finally:
        core.close()
