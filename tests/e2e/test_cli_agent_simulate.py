"""The ``posture agent`` and ``posture simulate`` commands, end to end."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner

from mdm_core.posture.model import Ownership, Platform
from posture_gateway.cli.main import cli
from tests.e2e.live_server import POLICY_DIR, live_server


def test_agent_commands_against_a_live_server(tmp_path: Path) -> None:
    runner = CliRunner()
    state = tmp_path / "agent-state"
    with live_server(tmp_path) as live:
        secret = live.core.enrollment.register_serial(
            "CLI-LNX-1", Platform.LINUX, "carol@example.com", "t"
        ).enrollment_secret
        base = ["agent"]
        enroll_args = [
            *base, "enroll", "--state-dir", str(state), "--server", live.url,
            "--serial", "CLI-LNX-1", "--ownership", "corporate",
        ]  # fmt: skip
        no_secret = runner.invoke(cli, enroll_args, env={"POSTURE_ENROLLMENT_SECRET": ""})
        assert no_secret.exit_code != 0 and "enrollment secret" in no_secret.output
        wrong = runner.invoke(cli, [*enroll_args, "--enrollment-secret", "not-it"])
        assert wrong.exit_code != 0 and "invalid_enrollment_secret" in wrong.output
        assert "not-it" not in wrong.output  # the secret is never echoed
        enrolled = runner.invoke(cli, enroll_args, env={"POSTURE_ENROLLMENT_SECRET": secret})
        assert enrolled.exit_code == 0, enrolled.output
        assert secret not in enrolled.output
        assert "enrolled as device" in enrolled.output
        checked = runner.invoke(cli, [*base, "checkin", "--state-dir", str(state)])
        assert checked.exit_code == 0, checked.output
        assert "checked in" in checked.output

        # BYOD: the notice is shown and refusing it stops the enrollment
        token = live.core.enrollment.create_token(
            "dave@example.com", Ownership.BYOD, Platform.LINUX, timedelta(hours=1), "t"
        )
        byod = tmp_path / "byod-state"
        refused = runner.invoke(
            cli,
            [
                *base,
                "enroll",
                "--state-dir",
                str(byod),
                "--server",
                live.url,
                "--token",
                token,
                "--ownership",
                "byod",
            ],  # fmt: skip
            input="n\n",
        )
        assert refused.exit_code != 0
        assert "It CANNOT see" in refused.output and "not accepted" in refused.output
        accepted = runner.invoke(
            cli,
            [
                *base,
                "enroll",
                "--state-dir",
                str(byod),
                "--server",
                live.url,
                "--token",
                token,
                "--ownership",
                "byod",
                "--accept-notice",
            ],  # fmt: skip
        )
        assert accepted.exit_code == 0, accepted.output

    posture = runner.invoke(cli, [*base, "posture"])
    assert posture.exit_code == 0
    assert json.loads(posture.output)["agent_version"]


def test_agent_refuses_bad_invocations(tmp_path: Path) -> None:
    runner = CliRunner()
    state = str(tmp_path / "s")
    not_enrolled = runner.invoke(cli, ["agent", "checkin", "--state-dir", state])
    assert not_enrolled.exit_code != 0 and "enroll" in not_enrolled.output
    byod_without_token = runner.invoke(
        cli,
        [
            "agent",
            "enroll",
            "--state-dir",
            state,
            "--server",
            "http://127.0.0.1:9",
            "--ownership",
            "byod",
        ],  # fmt: skip
    )
    assert byod_without_token.exit_code == 2 and "needs --token" in byod_without_token.output
    both = runner.invoke(
        cli,
        [
            "agent",
            "enroll",
            "--state-dir",
            state,
            "--server",
            "http://127.0.0.1:9",
            "--ownership",
            "corporate",
            "--token",
            "t",
            "--serial",
            "s",
        ],  # fmt: skip
    )
    assert both.exit_code == 2 and "not both" in both.output


def test_simulate_in_process(tmp_path: Path) -> None:
    env = {
        "POSTURE_DATA_DIR": str(tmp_path / "data"),
        "POSTURE_DEV_MODE": "true",
        "POSTURE_POLICY_DIR": str(POLICY_DIR),
        "POSTURE_PUBLIC_URL": "http://127.0.0.1:8000",
        "COLUMNS": "160",
    }
    runner = CliRunner()
    done = runner.invoke(
        cli,
        [
            "simulate",
            "--devices",
            "12",
            "--rounds",
            "2",
            "--jailbroken-ratio",
            "0.2",
            "--platform-mix",
            "ios=1,ipados=1,macos=1,android=1,windows=1,linux=1",
        ],  # fmt: skip
        env=env,
    )
    assert done.exit_code == 0, done.output
    assert "12 simulated devices" in done.output
    for platform in ("ios", "ipados", "macos", "android", "windows", "linux"):
        assert platform in done.output
    bad = runner.invoke(cli, ["simulate", "--platform-mix", "symbian=1"], env=env)
    assert bad.exit_code == 2 and "unknown platform" in bad.output


def test_simulate_against_a_running_server(tmp_path: Path) -> None:
    """``--url``: provision through the shared database, devices talk real HTTP."""
    with live_server(tmp_path) as live:
        env = {
            "POSTURE_DATA_DIR": str(tmp_path / "server"),  # the live server's data dir and DB
            "POSTURE_DEV_MODE": "true",
            "POSTURE_POLICY_DIR": str(POLICY_DIR),
            "POSTURE_PUBLIC_URL": live.url,
            "COLUMNS": "160",
        }
        done = CliRunner().invoke(
            cli, ["simulate", "--devices", "6", "--url", live.url, "--seed", "11"], env=env
        )
        assert done.exit_code == 0, done.output
        with live.core.storage.unit_of_work() as uow:
            enrolled = [
                d
                for u in range(97)
                for d in uow.devices.list_for_user(f"sim-user-{u:03d}@example.com")
            ]
        assert len(enrolled) == 6
        assert {d.platform.value for d in enrolled} == {
            "ios", "ipados", "macos", "android", "windows", "linux"
        }  # fmt: skip
