"""``posture device list|show|commands|lock|wipe|selective-wipe|retire|approve|reject|
cancel-command``: device administration over the admin API.

Each command calls the running server as the named admin whose token it is given
(:mod:`posture_gateway.cli.admin_client`: ``--server``, ``--token``), so what the caller may do
is the server's decision, authorised by role and audited there. ``list`` and ``commands``
print rich tables (every command's state and timestamps), the others a short summary;
``--json`` prints the server's answer as JSON instead. Errors: one line, non-zero exit.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from posture_gateway.cli.admin_client import AdminClient, admin_client_options

__all__ = ["device_group"]

_json_option = click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")


def _seg(value: str) -> str:
    return quote(value, safe="")


def _when(value: Any) -> str:
    if not value:
        return ""
    text = str(value)
    return text[:19].replace("T", " ")


def _emit_json(body: dict[str, Any]) -> None:
    click.echo(json.dumps(body, indent=2, sort_keys=True))


def _status(value: str) -> str:
    colour = {
        "acknowledged": "green",
        "queued": "cyan",
        "delivered": "blue",
        "error": "red",
        "cancelled": "dim",
        "not_now": "yellow",
        "pending_approval": "yellow",
        "rejected": "red",
    }.get(value)
    text = escape(value)
    return f"[{colour}]{text}[/{colour}]" if colour else text


@click.group("device")
def device_group() -> None:
    """Administer devices through the admin API (docs/device-admin.md)."""


@device_group.command("list")
@click.option("--user", "user_id", default=None, help="Only this user's devices.")
@click.option(
    "--status",
    type=click.Choice(["active", "quarantined", "pending_verification", "retired", "wiped"]),
    default=None,
)
@click.option("--ownership", type=click.Choice(["corporate", "byod"]), default=None)
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
@click.option("--cursor", default=None, help="The next page (printed after a full page).")
@_json_option
@admin_client_options
def list_cmd(
    user_id: str | None,
    status: str | None,
    ownership: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
    server: str,
    token: str,
) -> None:
    """List devices (a page; --cursor for the next)."""
    body = AdminClient(server, token).get(
        "/admin/api/devices",
        user_id=user_id,
        status=status,
        ownership=ownership,
        limit=limit,
        cursor=cursor,
    )
    if as_json:
        _emit_json(body)
        return
    found = body.get("devices", [])
    table = Table(title=f"Devices ({len(found)})", title_justify="left")
    for column in ("id", "user", "platform", "ownership", "status", "enrolled", "last check-in"):
        table.add_column(column, overflow="fold")
    for d in found:
        table.add_row(
            escape(str(d["id"])),
            escape(str(d["user_id"])),
            escape(str(d["platform"])),
            escape(str(d["ownership"])),
            escape(str(d["status"])),
            _when(d.get("enrolled_at")),
            _when(d.get("last_checkin_at")),
        )
    console = Console()
    console.print(table)
    if body.get("next_cursor"):
        console.print(f"next page: --cursor {escape(str(body['next_cursor']))}")


@device_group.command("show")
@click.argument("device_id")
@_json_option
@admin_client_options
def show_cmd(device_id: str, as_json: bool, server: str, token: str) -> None:
    """A device: record, latest posture, compliance, wipe requests."""
    body = AdminClient(server, token).get(f"/admin/api/devices/{_seg(device_id)}")
    if as_json:
        _emit_json(body)
        return
    device, compliance, posture = body["device"], body["compliance"], body.get("posture")
    table = Table(title=f"Device {escape(device['id'])}", title_justify="left", show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for key in ("user_id", "platform", "ownership", "status", "status_reason", "serial_number"):
        table.add_row(key, escape(str(device.get(key) or "")))
    table.add_row("enrolled", _when(device.get("enrolled_at")))
    table.add_row("last check-in", _when(device.get("last_checkin_at")))
    table.add_row("compliance", escape(f"{compliance['state']} ({compliance.get('outcome')})"))
    if posture is not None:
        table.add_row("posture received", _when(posture.get("received_at")))
        for key in ("os_version", "storage_encrypted", "passcode_set", "jailbroken"):
            table.add_row(key, escape(str(posture.get(key))))
    for r in body.get("wipe_requests", []):
        table.add_row(
            "wipe request",
            f"{escape(r['id'])} {_status(r['status'])} by {escape(r['requested_by'])}",
        )
    Console().print(table)


@device_group.command("commands")
@click.argument("device_id")
@_json_option
@admin_client_options
def commands_cmd(device_id: str, as_json: bool, server: str, token: str) -> None:
    """Every command of a device: its state and timestamps."""
    body = AdminClient(server, token).get(f"/admin/api/devices/{_seg(device_id)}/commands")
    if as_json:
        _emit_json(body)
        return
    found = body.get("commands", [])
    table = Table(title=f"Commands of {escape(device_id)} ({len(found)})", title_justify="left")
    for column in (
        "id",
        "type",
        "status",
        "by",
        "queued",
        "delivered",
        "acknowledged",
        "updated",
        "error",
    ):
        table.add_column(column, overflow="fold")
    for c in found:
        table.add_row(
            escape(str(c["id"])),
            escape(str(c["type"])),
            _status(str(c["status"])),
            escape(str(c.get("created_by") or "")),
            _when(c.get("created_at")),
            _when(c.get("delivered_at")),
            _when(c.get("acknowledged_at")),
            _when(c.get("updated_at")),
            escape(str(c.get("error") or "")),
        )
    Console().print(table)


def _print_command(body: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _emit_json(body)
        return
    c = body["command"]
    Console().print(
        f"{escape(c['type'])} {escape(c['id'])} for {escape(c['device_id'])}: "
        f"{_status(c['status'])}"
    )


def _print_wipe(body: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _emit_json(body)
        return
    r = body["wipe_request"]
    line = f"wipe request {escape(r['id'])} for {escape(r['device_id'])}: {_status(r['status'])}"
    if r.get("command_id"):
        line += f" (command {escape(r['command_id'])})"
    elif r["status"] == "pending_approval":
        line += " (a second admin must approve: posture device approve ID)"
    Console().print(line)


@device_group.command("lock")
@click.argument("device_id")
@click.option("--message", default=None, help="Shown on the locked screen.")
@click.option("--phone", "phone_number", default=None, help="A number to call, on the screen.")
@_json_option
@admin_client_options
def lock_cmd(
    device_id: str,
    message: str | None,
    phone_number: str | None,
    as_json: bool,
    server: str,
    token: str,
) -> None:
    """Lock a device (helpdesk)."""
    payload = {k: v for k, v in (("message", message), ("phone_number", phone_number)) if v}
    body = AdminClient(server, token).post(f"/admin/api/devices/{_seg(device_id)}/lock", payload)
    _print_command(body, as_json)


_reason_option = click.option("--reason", required=True, help="Why (kept in the audit trail).")


@device_group.command("wipe")
@click.argument("device_id")
@_reason_option
@_json_option
@admin_client_options
def wipe_cmd(device_id: str, reason: str, as_json: bool, server: str, token: str) -> None:
    """Full wipe (admin; corporate devices only; may need a second admin)."""
    body = AdminClient(server, token).post(
        f"/admin/api/devices/{_seg(device_id)}/wipe", {"reason": reason}
    )
    _print_wipe(body, as_json)


@device_group.command("selective-wipe")
@click.argument("device_id")
@_reason_option
@_json_option
@admin_client_options
def selective_wipe_cmd(device_id: str, reason: str, as_json: bool, server: str, token: str) -> None:
    """Remove only what the MDM installed (admin)."""
    body = AdminClient(server, token).post(
        f"/admin/api/devices/{_seg(device_id)}/selective-wipe", {"reason": reason}
    )
    _print_command(body, as_json)


@device_group.command("retire")
@click.argument("device_id")
@_reason_option
@_json_option
@admin_client_options
def retire_cmd(device_id: str, reason: str, as_json: bool, server: str, token: str) -> None:
    """Retire a device: certificates revoked, access ended (admin)."""
    body = AdminClient(server, token).post(
        f"/admin/api/devices/{_seg(device_id)}/retire", {"reason": reason}
    )
    if as_json:
        _emit_json(body)
        return
    d = body["device"]
    Console().print(
        f"{escape(d['id'])}: {escape(d['status'])} "
        f"({len(body.get('revoked_certificates', []))} certificate(s) revoked)"
    )


@device_group.command("approve")
@click.argument("request_id")
@_json_option
@admin_client_options
def approve_cmd(request_id: str, as_json: bool, server: str, token: str) -> None:
    """Approve a pending full-wipe request as the second admin (admin)."""
    body = AdminClient(server, token).post(
        f"/admin/api/wipe-requests/{_seg(request_id)}/approve", {}
    )
    _print_wipe(body, as_json)


@device_group.command("reject")
@click.argument("request_id")
@_reason_option
@_json_option
@admin_client_options
def reject_cmd(request_id: str, reason: str, as_json: bool, server: str, token: str) -> None:
    """Reject a pending full-wipe request (admin)."""
    body = AdminClient(server, token).post(
        f"/admin/api/wipe-requests/{_seg(request_id)}/reject", {"reason": reason}
    )
    _print_wipe(body, as_json)


@device_group.command("cancel-command")
@click.argument("command_id")
@click.option("--reason", default=None, help="Why (kept in the audit trail).")
@_json_option
@admin_client_options
def cancel_command_cmd(
    command_id: str, reason: str | None, as_json: bool, server: str, token: str
) -> None:
    """Cancel a command that is not final yet (admin)."""
    payload = {"reason": reason} if reason else {}
    body = AdminClient(server, token).post(
        f"/admin/api/commands/{_seg(command_id)}/cancel", payload
    )
    _print_command(body, as_json)
