"""``posture admin add|list|disable|rotate`` in the server's app context on a real SQLite
database: the token printed once and working, the operator audited, errors one line."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select

from mdm_core.storage.sql.tables import audit_log
from posture_gateway.admin.service import authenticate_token
from posture_gateway.app import create_app
from posture_gateway.cli.main import cli
from posture_gateway.settings import Settings


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    built = create_app(Settings(data_dir=tmp_path, dev_mode=True))
    yield built
    built.extensions["posture"].core.close()


def _env(tmp_path: Path) -> dict[str, str]:
    return {"POSTURE_DEV_MODE": "true", "POSTURE_DATA_DIR": str(tmp_path), "COLUMNS": "200"}


def test_add_list_rotate_disable(app: Flask, tmp_path: Path) -> None:
    runner = CliRunner()
    storage = app.extensions["posture"].core.storage
    added = runner.invoke(cli, ["admin", "add", "ada", "--role", "admin"], env=_env(tmp_path))
    assert added.exit_code == 0, added.output
    token = added.stdout.strip()
    assert token.startswith("pga_") and "shown only now" in added.stderr
    assert authenticate_token(storage, token).principal is not None
    again = runner.invoke(cli, ["admin", "add", "ada", "--role", "helpdesk"], env=_env(tmp_path))
    assert again.exit_code == 1 and "admin_exists" in again.output
    bad = runner.invoke(cli, ["admin", "add", "Ada!", "--role", "admin"], env=_env(tmp_path))
    assert bad.exit_code == 1 and "invalid_admin_name" in bad.output
    role = runner.invoke(cli, ["admin", "add", "x", "--role", "root"], env=_env(tmp_path))
    assert role.exit_code == 2

    listed = runner.invoke(cli, ["admin", "list"], env=_env(tmp_path))
    assert listed.exit_code == 0 and "Admins (1)" in listed.output and "enabled" in listed.output
    assert token not in listed.output

    rotated = runner.invoke(cli, ["admin", "rotate", "ada"], env=_env(tmp_path))
    assert rotated.exit_code == 0
    fresh = rotated.stdout.strip()
    assert fresh != token and authenticate_token(storage, token).principal is None
    assert authenticate_token(storage, fresh).principal is not None

    disabled = runner.invoke(cli, ["admin", "disable", "ada"], env=_env(tmp_path))
    assert disabled.exit_code == 0
    assert authenticate_token(storage, fresh).refusal == "admin_disabled"
    unknown = runner.invoke(cli, ["admin", "disable", "nobody"], env=_env(tmp_path))
    assert unknown.exit_code == 1 and "unknown_admin" in unknown.output

    with app.extensions["posture"].core.database.engine.connect() as conn:
        rows = conn.execute(
            select(audit_log.c.actor, audit_log.c.action).where(audit_log.c.subject == "admin:ada")
        ).all()
    operator = f"operator:{getpass.getuser()}"
    assert [tuple(r) for r in rows] == [
        (operator, "admin.added"),
        (operator, "admin.token_rotated"),
        (operator, "admin.disabled"),
    ]
