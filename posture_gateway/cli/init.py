"""``posture init DIR``: a starter configuration that signs someone in on a fresh install.

Writes, and refuses to overwrite any of them:

- ``DIR/config.yaml`` (mode 0600: it holds the generated secrets) with absolute paths, so
  it works from any directory: ``data_dir``, a generated Flask ``secret_key`` (every worker
  signs sessions with the same key), ``ca.passphrase`` and ``oidc.key_passphrase`` (the CA
  and signing keys are encrypted at rest with them), ``public_url`` and the two files below;
- ``DIR/users.yaml``: one local user with a generated password, printed once and stored
  only as its scrypt hash (the same hasher as ``posture users hash-password``). The users
  file is a directory source, so the user is in the directory mirror at start-up;
- ``DIR/clients.yaml``: an example relying party with its redirect URI and a generated
  client secret (printed once, stored hashed).

Then it prints the next commands: serve, create an enrollment token, enroll a device, run
the device's login helper and sign in with ``posture try-login`` (the example client).
The shipped policy set applies (``policy_dir`` is left at its default).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import click
import yaml
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from posture_gateway.cli.base import ConfigProblem
from posture_gateway.cli.try_login import parse_loopback_redirect
from posture_gateway.oidc.passwords import (
    generate_client_secret,
    hash_client_secret,
    hash_password,
)

__all__ = ["init_cmd", "write_starter_config", "StarterConfig"]

_CONFIG, _USERS, _CLIENTS = "config.yaml", "users.yaml", "clients.yaml"


class StarterConfig:
    """What ``init`` wrote, with the one-time secrets to show."""

    def __init__(
        self, directory: Path, username: str, password: str, client_id: str, client_secret: str
    ) -> None:
        self.directory = directory
        self.config = directory / _CONFIG
        self.username = username
        self.password = password
        self.client_id = client_id
        self.client_secret = client_secret


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 (never overwrite: ``O_EXCL``)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def write_starter_config(
    directory: Path,
    *,
    public_url: str,
    username: str,
    client_id: str,
    redirect_uri: str,
) -> StarterConfig:
    """Write the starter files into ``directory``; raises ``FileExistsError`` if any exists."""
    directory = directory.absolute()
    taken = [n for n in (_CONFIG, _USERS, _CLIENTS) if (directory / n).exists()]
    if taken:
        raise FileExistsError(", ".join(str(directory / n) for n in taken))
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    password = secrets.token_urlsafe(18)
    client_secret = generate_client_secret()
    user_id = f"u-{username}"
    config = {
        "public_url": public_url.rstrip("/"),
        "data_dir": str(directory / "data"),
        "secret_key": secrets.token_urlsafe(48),
        "ca": {"passphrase": secrets.token_urlsafe(32)},
        "oidc": {
            "key_passphrase": secrets.token_urlsafe(32),
            "users_file": str(directory / _USERS),
            "clients_file": str(directory / _CLIENTS),
        },
    }
    users = {
        "users": [
            {
                "username": username,
                "user_id": user_id,
                "password_hash": hash_password(password),
                "name": username,
                "groups": ["everyone"],
            }
        ]
    }
    clients = {
        "clients": [
            {
                "client_id": client_id,
                "name": "Example application",
                "client_secret_hash": hash_client_secret(client_secret),
                "redirect_uris": [redirect_uri],
                "scopes": ["openid", "profile", "email"],
                "grant_types": ["authorization_code", "refresh_token"],
            }
        ]
    }
    header = (
        "# Posture Gateway starter configuration (`posture init`). It holds secrets: keep it\n"
        "# mode 0600. Durations everywhere use 30s, 2m, 1h, 7d. See docs/configuration.md.\n"
    )
    _write_private(directory / _CONFIG, header + yaml.safe_dump(config, sort_keys=False))
    _write_private(
        directory / _USERS,
        "# Local password users (also a directory source). Add one with\n"
        "# `posture users hash-password`.\n" + yaml.safe_dump(users, sort_keys=False),
    )
    _write_private(
        directory / _CLIENTS,
        "# Relying parties. A new secret: `posture clients new-secret`.\n"
        + yaml.safe_dump(clients, sort_keys=False),
    )
    return StarterConfig(directory, username, password, client_id, client_secret)


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--public-url", default="http://127.0.0.1:8000", show_default=True)
@click.option("--user", "username", default="admin", show_default=True, help="Local user.")
@click.option("--client-id", default="example-app", show_default=True)
@click.option(
    "--redirect-uri",
    default="http://127.0.0.1:8080/callback",
    show_default=True,
    help="The example client's redirect URI.",
)
def init_cmd(
    directory: Path, public_url: str, username: str, client_id: str, redirect_uri: str
) -> None:
    """Write a starter configuration into DIRECTORY (refuses to overwrite)."""
    if not public_url.startswith(("http://", "https://")):
        raise click.BadParameter(
            "must start with https:// (or http:// for a test)", param_hint="--public-url"
        )
    try:
        made = write_starter_config(
            directory,
            public_url=public_url,
            username=username,
            client_id=client_id,
            redirect_uri=redirect_uri,
        )
    except FileExistsError as exc:
        raise ConfigProblem(f"{exc} already exist(s): `posture init` never overwrites") from exc
    console = Console()
    config = escape(str(made.config))
    console.print(
        Panel(
            f"wrote {escape(str(made.directory))}: config.yaml (mode 0600, secrets), "
            "users.yaml, clients.yaml\n\n"
            f"local user      [bold]{escape(made.username)}[/]\n"
            f"password        [bold]{escape(made.password)}[/]\n"
            f"client          {escape(made.client_id)} → {escape(redirect_uri)}\n"
            f"client secret   [bold]{escape(made.client_secret)}[/]\n\n"
            "The password and the client secret are shown once: only their hashes are kept.",
            title="starter configuration",
            expand=False,
        ),
        soft_wrap=False,
    )
    url = public_url.rstrip("/")
    try_login_args = "" if made.client_id == "example-app" else f" --client-id {made.client_id}"
    try_login_note = "   (sign in through the example client)"
    if redirect_uri != "http://127.0.0.1:8080/callback":
        if _is_loopback_http(redirect_uri):
            try_login_args += f" --redirect-uri {redirect_uri}"
        else:
            try_login_note = (
                "   (add http://127.0.0.1:8080/callback to the client's redirect_uris first)"
            )
    try_login_args = escape(try_login_args)
    console.print("[bold]Next:[/]", highlight=False)
    console.print(
        f"  1. posture --config {config} serve\n"
        f"  2. posture --config {config} enroll token --user u-{escape(made.username)} "
        "--ownership corporate\n"
        f"  3. posture agent enroll --server {escape(url)} --token TOKEN --ownership corporate"
        "   (on the device)\n"
        f"  4. posture agent serve-loopback --gateway-origin {escape(url)}"
        "   (on the device: the login helper; keep it running)\n"
        f"  5. posture --config {config} try-login{try_login_args} --client-secret SECRET"
        f"{try_login_note}",
        highlight=False,
        soft_wrap=True,
    )


def _is_loopback_http(uri: str) -> bool:
    """Whether ``posture try-login`` can listen on ``uri``."""

    try:
        parse_loopback_redirect(uri)
    except click.BadParameter:
        return False
    return True
