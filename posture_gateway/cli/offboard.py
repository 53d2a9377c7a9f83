"""``posture offboard start|status|cancel|reinstate``: offboarding over the admin API.

Every command talks to a running server over HTTP with the admin's own token
(:mod:`posture_gateway.cli.admin_client`), so the server decides and audits what the admin
may do. ``status USER`` prints each job and, per device, what was queued, delivered,
acknowledged or failed, with the times (a rich table; ``--json`` for the raw answer).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from posture_gateway.cli.admin_client import AdminClient, admin_client_options

__all__ = ["offboard_group"]

_PATH = "/admin/api/offboarding"
_STATES = ("queued", "delivered", "acknowledged", "error", "cancelled")


@click.group("offboard")
def offboard_group() -> None:
    """Offboard a user: block logins at once, wipe/lock/retire their devices."""


@offboard_group.command("start")
@click.argument("user_id")
@click.option("--reason", required=True, help="Why (kept in the audit trail).")
@click.option(
    "--effective-at",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z"]),
    default=None,
    help="Schedule for later (ISO 8601 with a UTC offset); default: now.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the server's JSON answer.")
@admin_client_options
def start_cmd(
    user_id: str,
    reason: str,
    effective_at: datetime | None,
    as_json: bool,
    server: str,
    token: str,
) -> None:
    """Start (or find) USER_ID's offboarding."""
    body: dict[str, Any] = {"user_id": user_id, "reason": reason}
    if effective_at is not None:
        body["effective_at"] = effective_at.isoformat()
    job = AdminClient(server, token).post(_PATH, body)
    if as_json:
        click.echo(json.dumps(job, indent=2))
        return
    Console().print(
        f"offboarding [bold]{job['id']}[/bold] of {job['user_id']}: {job['status']} "
        f"(effective {job['effective_at']})"
    )


@offboard_group.command("status")
@click.argument("user_id")
@click.option("--json", "as_json", is_flag=True, help="Print the server's JSON answer.")
@admin_client_options
def status_cmd(user_id: str, as_json: bool, server: str, token: str) -> None:
    """Per job and device of USER_ID: the action and each command's states with times."""
    answer = AdminClient(server, token).get(_PATH, user_id=user_id)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    console = Console()
    blocked = "[red]blocked[/red]" if answer.get("logins_blocked") else "not blocked"
    console.print(f"user {answer['user_id']}: logins {blocked}")
    if not answer["jobs"]:
        console.print("no offboarding job")
    for job in answer["jobs"]:
        console.print(
            f"job [bold]{job['id']}[/bold] {job['status']} trigger {job['trigger']} "
            f"effective {job['effective_at']} finished {job['finished_at'] or '-'}"
        )
        table = Table(show_lines=False)
        for column in ("device", "ownership", "action", "state", "command", *_STATES):
            table.add_column(column)
        for device in job["devices"]:
            commands = device["commands"] or [None]
            for command in commands:
                times = command["times"] if command else {}
                table.add_row(
                    device["device_id"],
                    device["ownership"],
                    device["action"],
                    device["state"]
                    + (
                        f" ({device['wipe_request_status']})"
                        if device["wipe_request_status"]
                        else ""
                    ),
                    f"{command['type']} {command['status']}" if command else "-",
                    *(times.get(s, "-") for s in _STATES),
                )
        console.print(table)


@offboard_group.command("cancel")
@click.argument("job_id")
@click.option("--reason", required=True, help="Why (kept in the audit trail).")
@admin_client_options
def cancel_cmd(job_id: str, reason: str, server: str, token: str) -> None:
    """Cancel a scheduled job (refused once it started)."""
    job = AdminClient(server, token).post(f"{_PATH}/{job_id}/cancel", {"reason": reason})
    Console().print(f"offboarding {job['id']} of {job['user_id']}: {job['status']}")


@offboard_group.command("reinstate")
@click.argument("user_id")
@click.option("--reason", required=True, help="Why (kept in the audit trail).")
@admin_client_options
def reinstate_cmd(user_id: str, reason: str, server: str, token: str) -> None:
    """Lift USER_ID's login and enrollment block; their open offboarding stops (commands
    the devices have not acknowledged are cancelled)."""
    AdminClient(server, token).post(f"{_PATH}/reinstate", {"user_id": user_id, "reason": reason})
    Console().print(f"{user_id}: reinstated (logins and enrollment allowed again)")
