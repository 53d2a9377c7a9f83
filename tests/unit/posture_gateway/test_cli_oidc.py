"""``posture keys``, ``posture users hash-password``, ``posture clients new-secret``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from posture_gateway.cli.keys import parse_duration
from posture_gateway.cli.main import cli
from posture_gateway.oidc.passwords import verify_client_secret, verify_password
from posture_gateway.signing.key_ring import KeyRing


def test_hash_password_from_stdin() -> None:
    result = CliRunner().invoke(
        cli, ["users", "hash-password", "--stdin"], input="a-long-password\n"
    )
    assert result.exit_code == 0, result.output
    assert verify_password("a-long-password", result.output.strip())


def test_hash_password_refuses_short() -> None:
    result = CliRunner().invoke(cli, ["users", "hash-password", "--stdin"], input="short\n")
    assert result.exit_code != 0 and "at least 12" in result.output


def test_new_client_secret() -> None:
    result = CliRunner().invoke(cli, ["clients", "new-secret"])
    lines = dict(line.split(":", 1) for line in result.output.strip().splitlines())
    assert verify_client_secret(lines["client_secret"].strip(), lines["client_secret_hash"].strip())


def test_keys_rotate_and_list(tmp_path: Path) -> None:
    env = {"POSTURE_DEV_MODE": "true", "POSTURE_DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    listed = runner.invoke(cli, ["keys", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    rotated = runner.invoke(cli, ["keys", "rotate", "--alg", "ES256", "--overlap", "2h"], env=env)
    assert rotated.exit_code == 0, rotated.output
    ring = KeyRing.open(tmp_path / "oidc-keys", passphrase=None, dev_mode=True)
    assert ring.supported_algs() == ("RS256", "ES256")


@pytest.mark.parametrize(
    ("text", "expected"), [("90s", 90), ("30m", 1800), ("1d", 86400), ("1w", 7 * 86400)]
)
def test_parse_duration(text: str, expected: int) -> None:
    assert parse_duration(text) == timedelta(seconds=expected)


@pytest.mark.parametrize("text", ["", "1", "d", "0s", "-1d", "1.5h", "PT1H"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_duration(text)
