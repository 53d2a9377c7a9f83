"""``posture users link|unlink|links`` against a real (SQLite) server database."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from idp_connectors.identity import ExternalIdentity
from mdm_core.storage.directory import DirectoryUser
from posture_gateway.app import create_app
from posture_gateway.cli.main import cli
from posture_gateway.integrations.state import integrations
from posture_gateway.settings import Settings

ISS = "https://corp.example"


def _env(tmp_path: Path) -> dict[str, str]:
    return {"POSTURE_DEV_MODE": "true", "POSTURE_DATA_DIR": str(tmp_path)}


def _seed(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, dev_mode=True))
    core = app.extensions["posture"].core
    core.directory.upsert_user(DirectoryUser("u-alice", "alice", True, "scim", datetime.now(UTC)))
    integrations(app).close()
    core.close()


def _resolve(tmp_path: Path, subject: str) -> str | None:
    app = create_app(Settings(data_dir=tmp_path, dev_mode=True))
    try:
        return integrations(app).user_directory.resolve(
            ExternalIdentity(issuer=ISS, subject=subject, username="alice")
        )
    finally:
        integrations(app).close()
        app.extensions["posture"].core.close()


def test_link_lets_a_pre_linked_identity_in_and_unlink_ends_it(tmp_path: Path) -> None:
    _seed(tmp_path)
    runner = CliRunner()
    assert _resolve(tmp_path, "s-1") is None  # link_by: none for an unconfigured issuer
    args = ["users", "link", "u-alice", "--issuer", ISS, "--subject", "s-1", "--actor", "t"]
    result = runner.invoke(cli, args, env=_env(tmp_path))
    assert result.exit_code == 0, result.output
    assert "linked" in result.output
    assert _resolve(tmp_path, "s-1") == "u-alice"
    assert "already linked" in runner.invoke(cli, args, env=_env(tmp_path)).output
    listed = runner.invoke(cli, ["users", "links", "u-alice"], env=_env(tmp_path))
    assert f"{ISS}\ts-1\tadmin" in listed.output
    gone = runner.invoke(
        cli, ["users", "unlink", "--issuer", ISS, "--subject", "s-1"], env=_env(tmp_path)
    )
    assert gone.exit_code == 0, gone.output
    assert _resolve(tmp_path, "s-1") is None


def test_link_refuses_unknown_users_and_a_second_subject(tmp_path: Path) -> None:
    _seed(tmp_path)
    runner = CliRunner()
    unknown = runner.invoke(
        cli, ["users", "link", "u-nobody", "--issuer", ISS, "--subject", "s"], env=_env(tmp_path)
    )
    assert unknown.exit_code != 0 and "no directory user" in unknown.output
    ok = runner.invoke(
        cli, ["users", "link", "u-alice", "--issuer", ISS, "--subject", "s-1"], env=_env(tmp_path)
    )
    assert ok.exit_code == 0
    second = runner.invoke(
        cli, ["users", "link", "u-alice", "--issuer", ISS, "--subject", "s-2"], env=_env(tmp_path)
    )
    assert second.exit_code != 0 and "already has a link" in second.output
    missing = runner.invoke(
        cli, ["users", "unlink", "--issuer", ISS, "--subject", "s-2"], env=_env(tmp_path)
    )
    assert missing.exit_code != 0 and "no such link" in missing.output
