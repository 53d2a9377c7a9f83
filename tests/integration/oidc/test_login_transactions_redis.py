"""With ``redis_url`` set, login transactions live in Redis (shared by every process), and a
whole login runs on them; nothing is written to the SQL table."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from posture_gateway.login.transactions import EXTENSION_KEY, RedisLoginTransactionStore
from posture_gateway.oidc.tables import gateway_login_transactions
from posture_gateway.settings import Settings
from tests.integration.oidc.conftest import ISSUER, Browser, StubGate, write_files


@pytest.fixture
def settings(tmp_path: Path, redis_url: str) -> Settings:
    clients, users = write_files(tmp_path)
    return Settings.model_validate(
        {
            "data_dir": tmp_path / "data",
            "dev_mode": True,
            "public_url": ISSUER,
            "redis_url": redis_url,
            "oidc": {"clients_file": clients, "users_file": users},
        }
    )


def test_login_runs_on_redis_transactions(app: Flask, browser: Browser, gate: StubGate) -> None:
    assert isinstance(app.extensions[EXTENSION_KEY], RedisLoginTransactionStore)
    code = browser.full_login()
    assert browser.exchange(code).status_code == 200
    engine = app.extensions["posture"].core.database.engine
    with engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(gateway_login_transactions))
        assert rows.scalar_one() == 0
