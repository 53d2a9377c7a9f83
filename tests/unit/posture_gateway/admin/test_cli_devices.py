"""``posture device ...`` against a live server (werkzeug, SQLite, shipped policies): the
commands the end-to-end test does not run (retire, selective-wipe, reject, cancel-command,
paging), their JSON and table output, and errors as one line with a non-zero exit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from mdm_core.posture.model import Ownership, Platform
from posture_gateway.admin.principals import Role
from posture_gateway.admin.service import add_admin
from posture_gateway.cli.main import cli
from tests.e2e.live_server import LiveServer, live_server
from tests.helpers.enrolled import enroll_device


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(tmp_path) as running:
        yield running


def _token(server: LiveServer, name: str, role: Role) -> str:
    return add_admin(server.core.storage, name, role, actor="operator:test")[1].value


def _run(server: LiveServer, token: str, *args: str) -> Result:
    env = {"POSTURE_ADMIN_URL": server.url, "POSTURE_ADMIN_TOKEN": token, "COLUMNS": "250"}
    return CliRunner().invoke(cli, ["device", *args], env=env)


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_retire_cancel_and_reject_over_http(server: LiveServer) -> None:
    ada, hal = _token(server, "ada", Role.ADMIN), _token(server, "hal", Role.HELPDESK)
    devices = [enroll_device(server.core, "alice", platform=Platform.LINUX) for _ in range(3)]
    first = _json(_run(server, hal, "list", "--limit", "2", "--json"))
    assert len(first["devices"]) == 2 and first["next_cursor"]
    paged = _run(server, hal, "list", "--limit", "2")
    assert paged.exit_code == 0 and "next page: --cursor" in paged.stdout
    rest = _json(_run(server, hal, "list", "--cursor", first["next_cursor"], "--json"))
    assert len(rest["devices"]) == 1

    target = devices[0].device_id
    lock = _json(_run(server, hal, "lock", target, "--json"))["command"]
    denied = _run(server, hal, "cancel-command", lock["id"])
    assert denied.exit_code == 1 and "403 forbidden" in denied.output
    cancelled = _run(server, ada, "cancel-command", lock["id"], "--reason", "mistake")
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.stdout
    table = _run(server, hal, "commands", target)
    assert table.exit_code == 0 and "cancelled" in table.stdout and "admin:hal" in table.stdout

    retired = _run(server, ada, "retire", target, "--reason", "replaced")
    assert retired.exit_code == 0 and "retired" in retired.stdout
    again = _run(server, hal, "lock", target)
    assert again.exit_code == 1 and "409 device_inactive" in again.output
    shown = _run(server, hal, "show", target)
    assert shown.exit_code == 0 and "retired" in shown.stdout

    missing = _run(server, ada, "reject", "nope", "--reason", "x")
    assert missing.exit_code == 1 and "404 unknown_wipe_request" in missing.output


def test_selective_wipe_over_http(server: LiveServer) -> None:
    ada = _token(server, "ada", Role.ADMIN)
    byod = enroll_device(server.core, "bob", ownership=Ownership.BYOD, platform=Platform.LINUX)
    full = _run(server, ada, "wipe", byod.device_id, "--reason", "left")
    assert full.exit_code == 1 and "409 full_wipe_not_corporate" in full.output
    answer = _json(
        _run(server, ada, "selective-wipe", byod.device_id, "--reason", "left", "--json")
    )
    assert answer["command"]["type"] == "selective_wipe"
    assert answer["command"]["payload"]["work_container"] is True


def test_errors_are_one_line(server: LiveServer, tmp_path: Path) -> None:
    no_token = CliRunner().invoke(
        cli, ["device", "list"], env={"POSTURE_ADMIN_URL": server.url, "POSTURE_ADMIN_TOKEN": ""}
    )
    assert no_token.exit_code != 0
    wrong = _run(server, "nope", "list")
    assert wrong.exit_code == 1 and "401 unauthorized" in wrong.output
    assert len(wrong.output.strip().splitlines()) == 1
    down = CliRunner().invoke(
        cli,
        ["device", "list", "--server", "http://127.0.0.1:9", "--token", "pga_x"],
    )
    assert down.exit_code == 1 and "cannot reach the server" in down.output
