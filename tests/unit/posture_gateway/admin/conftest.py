"""An app with named admins (two admins, one helpdesk) on SQLite or a real PostgreSQL, with
the shipped policies, optionally with the two-person rule for full wipes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from mdm_core.runtime import MdmCore
from posture_gateway.admin.principals import Role
from posture_gateway.admin.service import add_admin
from posture_gateway.app import create_app
from posture_gateway.settings import Settings
from tests.conftest import _fresh_postgres_db

ROOT = Path(__file__).resolve().parents[4]
SHARED = "s" * 40


def policy_dir(tmp: Path, *, two_person_rule: bool) -> Path:
    """A copy of the shipped policies; the offboarding policy with the two-person rule."""
    target = tmp / "policies"
    shutil.copytree(ROOT / "policies", target)
    if two_person_rule:
        offboarding = target / "offboarding.yaml"
        offboarding.write_text(
            offboarding.read_text(encoding="utf-8") + "two_person_rule: true\n", encoding="utf-8"
        )
    return target


@dataclass
class AdminApp:
    app: Flask
    tokens: dict[str, str]  # ada, bob (admins), hal (helpdesk)

    @property
    def core(self) -> MdmCore:
        return self.app.extensions["posture"].core  # type: ignore[no-any-return]

    def client(self) -> FlaskClient:
        return self.app.test_client()

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def snapshot(self) -> dict[str, object]:
        """What an action could change: commands, wipe requests, device statuses, revoked
        certificates."""
        with self.core.database.engine.connect() as conn:
            return {
                "commands": conn.execute(text("SELECT id, status FROM commands ORDER BY id")).all(),
                "wipe_requests": conn.execute(
                    text("SELECT id, status, approvals FROM wipe_requests ORDER BY id")
                ).all(),
                "devices": conn.execute(text("SELECT id, status FROM devices ORDER BY id")).all(),
                "revoked": conn.execute(
                    text("SELECT serial FROM certificates WHERE revoked_at IS NOT NULL")
                ).all(),
            }

    def audit(self, actor: str) -> list[tuple[str, str, str]]:
        with self.core.database.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT action, subject, outcome FROM audit_log WHERE actor = :a ORDER BY id"),
                {"a": actor},
            ).all()
        return [(r[0], r[1], r[2]) for r in rows]


def _build(tmp: Path, database_url: str | None, two_person_rule: bool) -> AdminApp:
    app = create_app(
        Settings(
            data_dir=tmp / "data",
            dev_mode=True,
            database_url=database_url,
            policy_dir=policy_dir(tmp, two_person_rule=two_person_rule),
            admin_token=SHARED,  # type: ignore[arg-type]
        )
    )
    storage = app.extensions["posture"].core.storage
    tokens = {}
    for name, role in (("ada", Role.ADMIN), ("bob", Role.ADMIN), ("hal", Role.HELPDESK)):
        _, token = add_admin(storage, name, role, actor="operator:test")
        tokens[name] = token.value
    return AdminApp(app, tokens)


@pytest.fixture(params=["sqlite", "postgres"])
def admin_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AdminApp]:
    """Two-person rule ON, on both backends."""
    url = None
    if request.param == "postgres":
        url = _fresh_postgres_db(request.getfixturevalue("postgres_server_url"))
    built = _build(tmp_path, url, two_person_rule=True)
    try:
        yield built
    finally:
        built.core.close()


@pytest.fixture
def one_admin_app(tmp_path: Path) -> Iterator[AdminApp]:
    """Two-person rule OFF (the shipped offboarding policy), SQLite."""
    built = _build(tmp_path, None, two_person_rule=False)
    try:
        yield built
    finally:
        built.core.close()
