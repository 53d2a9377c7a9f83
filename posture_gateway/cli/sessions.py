"""``posture sessions list`` and ``posture sessions revoke``: the gateway's SSO sessions.

``list --user U | --device D`` prints a table (live and ended, newest first). ``revoke --user U
| --device D | --id S`` ends them, audited with the admin actor (``--actor``, default
``admin:<login>``); by user or device it ends that user's or device's tokens too, in the same
transaction (:mod:`posture_gateway.sso.admin`). Commands run in the server's app context (same
settings and database as ``posture serve``).
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime

import click
from flask.cli import with_appcontext
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from posture_gateway.sso.admin import revoke_sessions
from posture_gateway.sso.sql import SqlSessionStore
from posture_gateway.state import state

__all__ = ["sessions_group"]


def _one(**given: str | None) -> dict[str, str]:
    chosen = {k: v for k, v in given.items() if v}
    if len(chosen) != 1:
        names = ", ".join(f"--{k}" for k in given)
        raise click.UsageError(f"give exactly one of {names}")
    return chosen


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


@click.group("sessions")
def sessions_group() -> None:
    """SSO sessions of the gateway (docs/sessions.md)."""


@sessions_group.command("list")
@click.option("--user", "user_id", default=None, help="The sessions of this user id.")
@click.option("--device", "device_id", default=None, help="The sessions of this device id.")
@with_appcontext
def list_cmd(user_id: str | None, device_id: str | None) -> None:
    """List the sessions of a user or a device (live and ended, newest first)."""
    _one(user=user_id, device=device_id)
    gateway = state()
    lifetimes = gateway.settings.sessions
    store = SqlSessionStore(
        gateway.core.database, idle_ttl=lifetimes.idle_ttl, absolute_ttl=lifetimes.absolute_ttl
    )
    found = store.list(user_id=user_id, device_id=device_id)
    now = datetime.now(UTC)
    table = Table(title=f"SSO sessions ({len(found)})", title_justify="left")
    for column in ("id", "user", "device", "state", "signed in", "last seen", "ends"):
        table.add_column(column, overflow="fold")
    for s in found:
        if s.live(now):
            status = "[green]live[/green]"
        elif s.revoked_at is not None:
            status = f"[red]revoked[/red] ({escape(s.revoked_reason or '')})"
        else:
            status = "expired"
        table.add_row(
            escape(s.public_id),
            escape(s.user_id),
            escape(s.device_id),
            status,
            _when(s.auth_time),
            _when(s.last_seen_at),
            _when(min(s.idle_expires_at, s.absolute_expires_at)),
        )
    Console().print(table)  # per call: the terminal width is read now, not at import


@sessions_group.command("revoke")
@click.option("--user", "user_id", default=None, help="End every session (and token) of a user.")
@click.option(
    "--device", "device_id", default=None, help="End every session (and token) of a device."
)
@click.option("--id", "public_id", default=None, help="End one session (and its tokens).")
@click.option("--reason", default="admin_revoked", show_default=True, help="Kept in the audit log.")
@click.option("--actor", default=None, help="Who revokes (default: admin:<login>).")
@with_appcontext
def revoke_cmd(
    user_id: str | None,
    device_id: str | None,
    public_id: str | None,
    reason: str,
    actor: str | None,
) -> None:
    """End sessions: of a user, of a device, or one by id. Audited."""
    _one(user=user_id, device=device_id, id=public_id)
    count = revoke_sessions(
        state().core.storage,
        actor=actor or f"admin:{getpass.getuser()}",
        reason=reason,
        public_id=public_id,
        user_id=user_id,
        device_id=device_id,
    )
    what = "session" if public_id else "live credential(s) (sessions and tokens)"
    Console().print(f"revoked {count} {what}")
