"""``posture enroll``: the admin side of device enrollment.

- ``posture enroll token --user U --ownership byod [--platform ios] [--ttl 1h]`` creates a
  single-use enrollment token and prints it once (only its SHA-256 is stored).
- ``posture enroll register-serial SERIAL --platform macos [--user U]`` pre-registers a
  serial for automated corporate enrollment and prints its enrollment secret once (only its
  SHA-256 is stored): provision it to the device (the agent's ``--enrollment-secret`` or
  ``POSTURE_ENROLLMENT_SECRET``); with it the device re-enrolls by itself after a factory
  reset. Registering again replaces the secret.
- ``posture enroll revoke DEVICE_ID --reason TEXT`` revokes a device's certificates and
  retires it.
- ``posture enroll release DEVICE_ID --reason TEXT`` releases a quarantined device (it must
  still pass a fresh check-in before it gets access); audited with who and why.

Commands run in the server's app context (same settings and database as ``posture serve``).
"""

from __future__ import annotations

import getpass
from datetime import timedelta

import click
from flask.cli import with_appcontext
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from mdm_core.domain.errors import MdmError
from mdm_core.posture.model import Ownership, Platform
from mdm_core.support.durations import format_duration
from posture_gateway.cli.base import DURATION
from posture_gateway.state import state

__all__ = ["enroll_group"]

console = Console()
_PLATFORMS = click.Choice([p.value for p in Platform])
_OWNERSHIPS = click.Choice([o.value for o in Ownership])


def _actor(actor: str | None) -> str:
    return actor or f"admin:{getpass.getuser()}"


@click.group("enroll")
def enroll_group() -> None:
    """Enrollment tokens, registered serials, revocation and quarantine release."""


@enroll_group.command("token")
@click.option("--user", "user_id", required=True, help="The user the device will belong to.")
@click.option("--ownership", type=_OWNERSHIPS, required=True, help="corporate or byod.")
@click.option("--platform", type=_PLATFORMS, default=None, help="Restrict to one platform.")
@click.option(
    "--ttl", type=DURATION, default="1h", show_default=True, help="Lifetime: 90s, 30m, 12h, 7d."
)
@click.option("--actor", default=None, help="Who creates it (default: admin:<login>).")
@with_appcontext
def create_token(
    user_id: str, ownership: str, platform: str | None, ttl: timedelta, actor: str | None
) -> None:
    """Create a single-use enrollment token for USER and print it once."""

    lifetime = ttl
    core = state().core
    try:
        token = core.enrollment.create_token(
            user_id,
            Ownership(ownership),
            Platform(platform) if platform else None,
            lifetime,
            _actor(actor),
        )
    except MdmError as exc:
        raise click.ClickException(f"{exc.reason}: {exc.message}") from exc
    details = Table.grid(padding=(0, 2))
    details.add_row("user", user_id)
    details.add_row("ownership", ownership)
    details.add_row("platform", platform or "any")
    details.add_row("expires in", format_duration(ttl))
    details.add_row("enroll at", core.config.public_url.rstrip("/") + "/mdm/v1/enroll")
    console.print(Panel(details, title="enrollment token (single use, shown once)"))
    # The token alone on its own line, so scripts can take the last line.
    click.echo(token)


@enroll_group.command("register-serial")
@click.argument("serial")
@click.option("--platform", type=_PLATFORMS, required=True)
@click.option("--user", "user_id", default=None, help="Assign the device to this user.")
@click.option("--actor", default=None, help="Who registers it (default: admin:<login>).")
@with_appcontext
def register_serial(serial: str, platform: str, user_id: str | None, actor: str | None) -> None:
    """Pre-register SERIAL for automated corporate enrollment; print its secret once."""

    try:
        registered = state().core.enrollment.register_serial(
            serial, Platform(platform), user_id, _actor(actor)
        )
    except MdmError as exc:
        raise click.ClickException(f"{exc.reason}: {exc.message}") from exc
    reg = registered.registration
    table = Table("serial", "platform", "user", "bound device")
    table.add_row(reg.serial_number, reg.platform.value, reg.user_id or "-", reg.device_id or "-")
    console.print(table)
    console.print(
        Panel(
            "Provision this secret to the device (posture agent enroll --enrollment-secret, or\n"
            "POSTURE_ENROLLMENT_SECRET). Without it the serial cannot enroll. Registering\n"
            "the serial again replaces it.",
            title="enrollment secret (shown once)",
        )
    )
    # The secret alone on its own line, so scripts can take the last line.
    click.echo(registered.enrollment_secret)


@enroll_group.command("revoke")
@click.argument("device_id")
@click.option("--reason", required=True, help="Why (kept in the audit log).")
@click.option("--actor", default=None, help="Who revokes it (default: admin:<login>).")
@with_appcontext
def revoke(device_id: str, reason: str, actor: str | None) -> None:
    """Revoke every certificate of DEVICE_ID and retire it."""

    try:
        serials = state().core.enrollment.revoke_device(
            device_id, actor=_actor(actor), reason=reason
        )
    except MdmError as exc:
        raise click.ClickException(f"{exc.reason}: {exc.message}") from exc
    console.print(
        f"[bold]{device_id}[/bold] retired; revoked {len(serials)} certificate(s): "
        + (", ".join(serials) or "none")
    )


@enroll_group.command("release")
@click.argument("device_id")
@click.option("--reason", required=True, help="Why (kept in the audit log).")
@click.option("--actor", default=None, help="Who releases it (default: admin:<login>).")
@with_appcontext
def release(device_id: str, reason: str, actor: str | None) -> None:
    """Release quarantined DEVICE_ID; it gets access after its next passing check-in."""

    try:
        device = state().core.quarantine.release(device_id, actor=_actor(actor), reason=reason)
    except MdmError as exc:
        raise click.ClickException(f"{exc.reason}: {exc.message}") from exc
    console.print(
        f"[bold]{device_id}[/bold] released: {device.status.value} "
        "(access returns after a passing check-in)"
    )
