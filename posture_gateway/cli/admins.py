"""``posture admin add|list|disable|rotate``: the named admins of the admin API.

Run by the host operator in the server's app context (same settings and database as
``posture serve``), so the first admin can be made without one; every change is audited with
the actor ``operator:<unix login>``. ``add`` and ``rotate`` print the new token ONCE (only its
hash is stored: a lost token is rotated, never recovered).
"""

from __future__ import annotations

import getpass
from datetime import datetime

import click
from flask.cli import with_appcontext
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from posture_gateway.admin.principals import Role
from posture_gateway.admin.service import add_admin, disable_admin, list_admins, rotate_admin
from posture_gateway.state import state

__all__ = ["admin_group"]


def _operator() -> str:
    return f"operator:{getpass.getuser()}"


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def _print_token(name: str, token: str) -> None:
    # Plain stdout (no rich wrapping), so the token can be piped; shown once.
    click.echo(token)
    click.echo(f"(the API token of admin:{name}; it is shown only now)", err=True)


@click.group("admin")
def admin_group() -> None:
    """Named admins of the admin API and their tokens (docs/device-admin.md)."""


@admin_group.command("add")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    required=True,
    help="helpdesk: view and lock; admin: also wipe, retire, approve, offboard.",
)
@with_appcontext
def add_cmd(name: str, role: str) -> None:
    """Add an admin and print their API token (once)."""
    _, token = add_admin(state().core.storage, name, Role(role), actor=_operator())
    _print_token(name, token.value)


@admin_group.command("list")
@with_appcontext
def list_cmd() -> None:
    """List the admins (never their tokens)."""
    found = list_admins(state().core.storage)
    table = Table(title=f"Admins ({len(found)})", title_justify="left")
    for column in ("name", "role", "state", "created", "by", "token issued", "last used"):
        table.add_column(column, overflow="fold")
    for a in found:
        table.add_row(
            escape(a.name),
            a.role.value,
            "[green]enabled[/green]"
            if a.enabled
            else f"[red]disabled[/red] {_when(a.disabled_at)}",
            _when(a.created_at),
            escape(a.created_by),
            _when(a.token_issued_at),
            _when(a.last_used_at),
        )
    Console().print(table)  # per call: the terminal width is read now, not at import


@admin_group.command("disable")
@click.argument("name")
@with_appcontext
def disable_cmd(name: str) -> None:
    """Disable an admin: their token is refused from now on."""
    disable_admin(state().core.storage, name, actor=_operator())
    Console().print(f"admin:{escape(name)} disabled")


@admin_group.command("rotate")
@click.argument("name")
@with_appcontext
def rotate_cmd(name: str) -> None:
    """Give an admin a new token (printed once); the old one stops working."""
    _, token = rotate_admin(state().core.storage, name, actor=_operator())
    _print_token(name, token.value)
