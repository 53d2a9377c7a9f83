"""``posture users hash-password`` and ``posture clients new-secret``: credentials for files.

Both print what goes into the YAML files (``password_hash`` for the users file,
``client_secret_hash`` for the clients file) and never store anything. The password is read
from a hidden prompt (or stdin with ``--stdin``), never from the command line.
"""

from __future__ import annotations

import sys

import click

from posture_gateway.oidc.passwords import (
    generate_client_secret,
    hash_client_secret,
    hash_password,
)

__all__ = ["users_group", "clients_group"]


@click.group("users")
def users_group() -> None:
    """Local password users of the OpenID provider."""


@users_group.command("hash-password")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the password from stdin.")
def hash_password_cmd(from_stdin: bool) -> None:
    """Print the scrypt hash of a password for the users file."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 12:
        raise click.ClickException("use a password of at least 12 characters")
    click.echo(hash_password(password))


@click.group("clients")
def clients_group() -> None:
    """Relying parties (OAuth clients) of the OpenID provider."""


@clients_group.command("new-secret")
def new_secret() -> None:
    """Generate a client secret: give the secret to the client, put the hash in the file."""
    secret = generate_client_secret()
    click.echo(f"client_secret:      {secret}")
    click.echo(f"client_secret_hash: {hash_client_secret(secret)}")
