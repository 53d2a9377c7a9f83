"""A fresh install signs someone in: ``posture init`` -> a server from that config -> a real
login (password, enrolled device, real policies, code exchange); an imported directory user
signs in with the groups of the import; the users file is a directory source.

Before: nothing put a user into the directory mirror, so every login ended ``user_unknown``.
"""

from __future__ import annotations

import base64
import re
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from click.testing import CliRunner
from flask import Flask

from mdm_core.directory.mirror import user_context
from mdm_core.posture.model import Platform
from mdm_core.simulator.reports import DeviceTraits
from mdm_core.storage.directory import DirectoryUser
from posture_gateway.app import create_app
from posture_gateway.cli.main import cli
from posture_gateway.oidc.passwords import hash_password
from posture_gateway.oidc.server import EXTENSION_KEY
from posture_gateway.settings import load_settings
from tests.integration.oidc.conftest import Browser
from tests.integration.oidc.test_login_with_device import _enrolled, _finish

REDIRECT = "https://app.example/cb"
BOB_PASSWORD = "bob-password-123"


def _init(tmp_path: Path) -> dict[str, Any]:
    conf = tmp_path / "conf"
    result = CliRunner().invoke(
        cli,
        ["init", str(conf), "--public-url", "http://localhost", "--redirect-uri", REDIRECT],
        env={"COLUMNS": "120"},
    )
    assert result.exit_code == 0, result.output

    def shown(label: str) -> str:
        match = re.search(rf"{label}\s+(\S+)", result.output)
        assert match, result.output
        return match.group(1)

    return {
        "dir": conf,
        "config": conf / "config.yaml",
        "output": result.output,
        "password": shown("password"),
        "client_secret": shown("client secret"),
    }


def _app(config: Path) -> Flask:
    app = create_app(load_settings(config, environ={}))
    app.config["TESTING"] = True
    return app


@pytest.fixture
def started(tmp_path: Path) -> Iterator[tuple[dict[str, Any], list[Flask]]]:
    made = _init(tmp_path)
    apps: list[Flask] = []
    yield made, apps
    for app in apps:
        app.extensions["posture"].core.close()


def _login(app: Flask, username: str, password: str, user_id: str, secret: str) -> dict:
    dev = _enrolled(app, Platform.LINUX, DeviceTraits(), user=user_id)
    browser = Browser(app.test_client(), client_id="example-app", redirect_uri=REDIRECT)
    assert browser.authorize().status_code == 303
    assert browser.login(username=username, password=password).status_code == 303
    csrf, nonce = browser.device_page()
    issuer = app.extensions[EXTENSION_KEY].issuer.issuer
    response = browser.client.post(
        "/login/device",
        data={
            "csrf_token": csrf,
            "nonce": nonce,
            "proof": dev.login_proof(audience=issuer, nonce=nonce),
        },
    )
    code = _finish(browser, response)
    basic = base64.b64encode(f"example-app:{secret}".encode()).decode()
    tokens = browser.client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": browser.verifier,
        },
        headers={"Authorization": f"Basic {basic}"},
    )
    assert tokens.status_code == 200, tokens.get_data(as_text=True)
    claims = jwt.decode(tokens.get_json()["id_token"], options={"verify_signature": False})
    assert claims["device_id"] == dev.device_id
    return claims


def test_init_writes_private_files_says_what_next_and_never_overwrites(tmp_path: Path) -> None:
    made = _init(tmp_path)
    for name in ("config.yaml", "users.yaml", "clients.yaml"):
        mode = stat.S_IMODE((made["dir"] / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    config_text = made["config"].read_text(encoding="utf-8")
    assert "secret_key:" in config_text and "passphrase:" in config_text
    users_text = (made["dir"] / "users.yaml").read_text(encoding="utf-8")
    assert made["password"] not in users_text and "scrypt$" in users_text
    clients_text = (made["dir"] / "clients.yaml").read_text(encoding="utf-8")
    assert made["client_secret"] not in clients_text and REDIRECT in clients_text
    out = made["output"]
    assert "1. posture --config" in out and "serve" in out
    assert "2. posture --config" in out and "enroll token --user u-admin" in out
    assert "3. posture agent enroll --server http://localhost" in out
    assert "4. posture agent serve-loopback --gateway-origin http://localhost" in out
    assert "5. posture --config" in out and "try-login --client-secret SECRET" in out
    assert "add http://127.0.0.1:8080/callback" in out  # REDIRECT is not loopback
    before = {p.name: p.read_bytes() for p in made["dir"].iterdir()}
    again = CliRunner().invoke(cli, ["init", str(made["dir"])])
    assert again.exit_code == 2
    assert "never overwrites" in again.output and "Traceback" not in again.output
    assert {p.name: p.read_bytes() for p in made["dir"].iterdir()} == before


def test_a_server_from_the_init_config_signs_the_generated_user_in(
    started: tuple[dict[str, Any], list[Flask]],
) -> None:
    made, apps = started
    app = _app(made["config"])
    apps.append(app)
    core = app.extensions["posture"].core
    with core.storage.unit_of_work() as uow:
        ctx = user_context(uow, "u-admin")  # the users file is a directory source
    assert ctx is not None and ctx.active
    claims = _login(app, "admin", made["password"], "u-admin", made["client_secret"])
    assert claims["sub"] == "u-admin"
    assert claims["posture_outcome"] in {"allow", "warn"}


def test_an_imported_user_signs_in_with_the_imported_groups(
    started: tuple[dict[str, Any], list[Flask]], tmp_path: Path
) -> None:
    made, apps = started
    users_file = made["dir"] / "users.yaml"
    with users_file.open("a", encoding="utf-8") as out:
        out.write(
            f"- username: bob\n  user_id: u-bob\n"
            f'  password_hash: "{hash_password(BOB_PASSWORD, n=2**10)}"\n'
        )
    people = tmp_path / "people.csv"
    people.write_text(
        "kind,username,id,email,name,groups\n"
        "user,bob,u-bob,bob@example.com,Bob Example,payroll\n"
        "group,,,,payroll,finance\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    imported = runner.invoke(
        cli, ["--config", str(made["config"]), "directory", "import", str(people)], env={}
    )
    assert imported.exit_code == 0, imported.output
    # the users file put bob in the mirror at start; the import claims him (and his groups)
    assert re.search(r"changed\s+│\s+1\s+│\s+u-bob", imported.output), imported.output
    assert re.search(r"groups added\s+│\s+2", imported.output), imported.output
    again = runner.invoke(
        cli, ["--config", str(made["config"]), "directory", "import", str(people)], env={}
    )
    assert again.exit_code == 0 and re.search(r"unchanged\s+│\s+1", again.output), again.output
    shown = runner.invoke(cli, ["--config", str(made["config"]), "directory", "show", "bob"])
    assert "finance, payroll" in shown.output and "import" in shown.output

    app = _app(made["config"])  # a restart: the users file sync leaves the import's bob alone
    apps.append(app)
    with app.extensions["posture"].core.storage.unit_of_work() as uow:
        bob = uow.directory_users.get("u-bob")
        ctx = user_context(uow, "u-bob")
    assert bob is not None and bob.source == "import" and bob.email == "bob@example.com"
    assert ctx is not None and ctx.groups == {"payroll", "finance"}
    claims = _login(app, "bob", BOB_PASSWORD, "u-bob", made["client_secret"])
    assert claims["sub"] == "u-bob"
    assert "finance-strict" in claims["posture_policy_ids"]  # the imported group decides


def test_a_user_removed_from_the_file_is_disabled_and_other_sources_untouched(
    started: tuple[dict[str, Any], list[Flask]],
) -> None:
    made, apps = started
    first = _app(made["config"])
    apps.append(first)
    first.extensions["posture"].core.directory.upsert_user(
        DirectoryUser(
            id="u-ldap", username="lee", active=True, source="ldap", updated_at=datetime.now(UTC)
        )
    )
    users_file = made["dir"] / "users.yaml"
    users_file.write_text(
        "users:\n- username: bob\n  user_id: u-bob\n"
        f'  password_hash: "{hash_password(BOB_PASSWORD, n=2**10)}"\n'
        "- username: lee\n  user_id: u-lee\n"  # lee's username is the LDAP user's
        f'  password_hash: "{hash_password(BOB_PASSWORD, n=2**10)}"\n',
        encoding="utf-8",
    )
    second = _app(made["config"])  # it starts: the conflicting entry keeps only lee out
    apps.append(second)
    with second.extensions["posture"].core.storage.unit_of_work() as uow:
        admin = user_context(uow, "u-admin")
        bob = user_context(uow, "u-bob")
        lee = user_context(uow, "u-ldap")
        file_lee = uow.directory_users.get("u-lee")
    assert admin is not None and admin.active is False
    assert bob is not None and bob.active
    assert lee is not None and lee.active
    assert file_lee is None
