"""The ``posture`` CLI never shows a traceback: help with no config creates nothing, every
configuration or input mistake is one line naming the key and the fix (exit 2), a runtime
failure is one line (exit 1), and only ``POSTURE_DEBUG=1`` shows a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from posture_gateway.cli import serve as cli_serve
from posture_gateway.cli.main import cli

POSTURE = [sys.executable, "-m", "posture_gateway.cli.main"]
REPO = Path(__file__).resolve().parents[3]


def _clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTURE_")}
    env.update(HOME=str(home), PYTHONPATH=str(REPO), COLUMNS="100", **extra)
    env.pop("XDG_STATE_HOME", None)
    return env


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            out.extend(_commands(command, (*prefix, name)))
        else:
            out.append((*prefix, name))
    return out


ALL_COMMANDS = _commands(cli)


def test_every_command_is_listed() -> None:
    names = {" ".join(c) for c in ALL_COMMANDS}
    for expected in ("serve", "init", "directory import", "agent checkin", "enroll token"):
        assert expected in names


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda c: " ".join(c) or "posture")
def test_help_works_with_no_config_and_creates_nothing(
    command: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("POSTURE_")}
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, [*command, "--help"], env=env, prog_name="posture")
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert "Usage: posture" in result.output
    for flask_option in ("--env-file", "-A, --app", "--debug", "-e,"):
        assert flask_option not in result.output
    if command == ():
        assert "--app" not in result.output
    assert os.listdir(tmp_path) == []


def test_bare_posture_lists_the_commands(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, [], prog_name="posture")
    assert result.exit_code == 0
    assert "Commands:" in result.output and "serve" in result.output


def test_help_in_a_subprocess_from_an_empty_directory_creates_nothing(tmp_path: Path) -> None:
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    for argv in ([], ["--help"], ["serve", "--help"], ["enroll", "token", "--help"]):
        done = subprocess.run(
            [*POSTURE, *argv], cwd=work, env=_clean_env(home), capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stdout + done.stderr
        assert "Usage: posture" in done.stdout
    assert list(work.iterdir()) == [] and list(home.iterdir()) == []


def test_missing_ca_passphrase_is_one_line_exit_2_and_nothing_created(tmp_path: Path) -> None:
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    done = subprocess.run(
        [*POSTURE, "enroll", "token", "--user", "alice", "--ownership", "byod"],
        cwd=work,
        env=_clean_env(home),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "ca.passphrase" in lines[0] and "POSTURE_CA__PASSPHRASE" in lines[0]
    assert list(work.iterdir()) == []  # no ./var, no database, no CA


def test_posture_debug_shows_the_traceback(tmp_path: Path) -> None:
    done = subprocess.run(
        [*POSTURE, "db", "migrate"],
        cwd=tmp_path,
        env=_clean_env(tmp_path, POSTURE_DEBUG="1"),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "ConfigurationError" in done.stderr
    assert "debug" not in done.stderr.splitlines()[-1]  # POSTURE_DEBUG is not a setting


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"POSTURE_PROOF__MAX_AGE": "PT2M"}, "proof.max_age: not a duration: 'PT2M' (use"),
        ({"POSTURE_NO_SUCH_KEY": "1"}, "no_such_key: Extra inputs are not permitted"),
        ({"POSTURE_OIDC__CODE_TTL": "soon"}, "oidc.code_ttl: not a duration"),
        ({"POSTURE_DATABASE_URL": "mysql://x/y"}, "database_url: unsupported scheme 'mysql'"),
        ({"POSTURE_CONFIG": "/nonexistent/posture.yaml"}, "cannot read config file"),
    ],
)
def test_configuration_mistakes_are_one_line_naming_the_key(
    tmp_path: Path, env: dict[str, str], needle: str
) -> None:
    base = {"POSTURE_DEV_MODE": "true", "POSTURE_DATA_DIR": str(tmp_path / "data")}
    result = CliRunner().invoke(cli, ["db", "migrate"], env={**base, **env})
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_bad_yaml_config_file_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "posture.yaml"
    config.write_text("dev_mode: [unclosed\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "db", "migrate"])
    assert result.exit_code == 2
    assert f"{config}: not valid YAML" in result.output


def test_bad_duration_argument_is_refused_before_anything_is_opened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = CliRunner().invoke(
        cli,
        ["enroll", "token", "--user", "a", "--ownership", "byod", "--ttl", "5x"],
        env={"POSTURE_DEV_MODE": "true", "POSTURE_DATA_DIR": str(data)},
    )
    assert result.exit_code == 2
    assert "Invalid value for '--ttl'" in result.output or "--ttl" in result.output
    assert "not a duration: '5x'" in result.output
    assert not data.exists()


def test_unreachable_database_is_a_runtime_error_exit_1(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["db", "migrate"],
        env={
            "POSTURE_DEV_MODE": "true",
            "POSTURE_DATA_DIR": str(tmp_path),
            "POSTURE_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
        },
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot use the database (database_url)")
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("workers", "said"), [(1, "(1 worker)"), (3, "(3 workers)")])
def test_serve_counts_workers_in_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int, said: str
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(cli_serve.os, "execve", lambda _exe, argv, _env: calls.append(argv))
    result = CliRunner().invoke(
        cli,
        ["serve", "--workers", str(workers)],
        env={"POSTURE_DEV_MODE": "true", "POSTURE_DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 0, result.output
    assert said in result.output
    assert calls and str(workers) in calls[0]


def test_unreachable_server_is_one_line_exit_1(tmp_path: Path) -> None:
    from tests.services import free_port

    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(
        cli,
        [
            "agent", "enroll", "--server", url, "--token", "t" * 43,
            "--ownership", "corporate", "--state-dir", str(tmp_path / "agent"),
        ],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: cannot reach the server {url}/mdm/v1/enroll")
    assert len(result.output.strip().splitlines()) == 1
