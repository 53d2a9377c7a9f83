"""``posture signals streams|retry`` on a real (SQLite) server database."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import yaml
from click.testing import CliRunner

from posture_gateway.app import create_app
from posture_gateway.cli.main import cli
from posture_gateway.settings import load_settings
from posture_gateway.signals.store import open_store
from tests.unit.posture_gateway.signals.conftest import add_events, core_of, flip

OKTA = "https://org.okta.example/security/api/v1/security-events"


def test_streams_and_retry(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"signals": {"receivers": [{"client_id": "okta", "push_endpoint": OKTA}]}})
    )
    env = {
        "POSTURE_DEV_MODE": "true",
        "POSTURE_DATA_DIR": str(tmp_path / "data"),
        "POSTURE_CONFIG": str(config),
    }
    app = create_app(load_settings(config, environ=env))
    try:
        add_events(app, flip())
        with open_store(core_of(app).database) as store:
            now = datetime.now(UTC)
            (row,) = store.claim_push(now, now, 10)
            store.mark_failed(row.id, now, "HTTP 400 authentication_failed: unknown kid")
        listed = CliRunner().invoke(cli, ["signals", "streams"], env=env)
        assert listed.exit_code == 0, listed.output
        assert "cfg-okta" in listed.output and "org.okta.example" in listed.output
        assert "authentication_failed" in listed.output
        again = CliRunner().invoke(cli, ["signals", "retry", "cfg-okta", "--actor", "ops"], env=env)
        assert again.exit_code == 0 and "1 SET(s) queued again" in again.output
        with open_store(core_of(app).database) as store:
            assert list(store.delivery_states("cfg-okta").values()) == ["pending"]
        with core_of(app).storage.unit_of_work() as uow:
            assert uow.audit.recent("ssf-stream:cfg-okta")[0].action == "ssf.retry"
        missing = CliRunner().invoke(cli, ["signals", "retry", "nope"], env=env)
        assert missing.exit_code != 0 and "no stream" in missing.output
    finally:
        app.extensions["posture_signals"].close()
        core_of(app).close()
