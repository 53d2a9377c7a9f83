"""``posture policy converge``: make devices match their configuration policies now.

The server converges devices by itself: a membership change (``directory.user_groups_changed``)
converges the user's devices, and a configuration policy edit picked up by the running
server converges every device (:mod:`mdm_core.device.convergence`). This command runs the
same by hand, after an edit made while no server ran, or to see what would be queued:

- ``posture policy converge`` plans and queues for every directory user's devices;
- ``--user U`` / ``--device D`` for one user or one device (an unknown device is an error);
- ``--dry-run`` shows the plans and queues nothing; ``--json`` prints them as JSON.

Idempotent: a second run queues nothing (the plans see the pending commands).
"""

from __future__ import annotations

import getpass
import json

import click
from flask.cli import with_appcontext
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mdm_core.device.commands import NoSuchDevice
from mdm_core.device.convergence import ConvergenceReport
from posture_gateway.state import state

__all__ = ["converge_cmd", "render_report"]


@click.command("converge")
@click.option("--user", "user_id", default=None, help="Only this directory user's devices.")
@click.option("--device", "device_id", default=None, help="Only this device.")
@click.option("--dry-run", is_flag=True, help="Show the plans; queue nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@with_appcontext
def converge_cmd(user_id: str | None, device_id: str | None, dry_run: bool, as_json: bool) -> None:
    """Queue the commands that make devices match their configuration policies."""
    if user_id and device_id:
        raise click.UsageError("give --user or --device, not both")
    core = state().core
    trigger = f"cli:{getpass.getuser()}"
    if device_id:
        try:
            outcome = core.convergence.converge_device(device_id, trigger=trigger, dry_run=dry_run)
        except NoSuchDevice as exc:
            raise click.ClickException(exc.message) from exc
        report = ConvergenceReport(trigger, [outcome])
    elif user_id:
        report = core.convergence.converge_user(user_id, trigger=trigger, dry_run=dry_run)
    else:
        report = core.convergence.converge_all(trigger=trigger, dry_run=dry_run)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "trigger": report.trigger,
                    "dry_run": dry_run,
                    "queued": report.queued,
                    "devices": [d.to_json() for d in report.devices],
                },
                indent=2,
                sort_keys=True,
            )
        )
        return
    render_report(Console(), report, dry_run=dry_run)


def render_report(console: Console, report: ConvergenceReport, *, dry_run: bool) -> None:
    table = Table(
        title=f"convergence{' (dry run: nothing queued)' if dry_run else ''}", title_justify="left"
    )
    for column in ("device", "user", "groups", "commands", "cancelled", "conflicts"):
        table.add_column(column, overflow="fold")
    for d in report.devices:
        plan = d.plan
        actions = (
            f"[dim]skipped: {d.skipped}[/dim]"
            if plan is None
            else escape(", ".join(str(a) for a in plan.actions)) or "[green]converged[/green]"
        )
        table.add_row(
            escape(d.device_id),
            escape(d.user_id),
            escape(", ".join(d.groups)) or "-",
            actions,
            str(len(plan.cancel)) if plan else "-",
            escape("; ".join(plan.conflicts)) if plan and plan.conflicts else "-",
        )
    console.print(table)
    verb = "would queue" if dry_run else "queued"
    planned = sum(len(d.plan.actions) for d in report.devices if d.plan is not None)
    console.print(
        f"{verb} {planned if dry_run else report.queued} command(s) on "
        f"{len(report.devices)} device(s)"
    )
