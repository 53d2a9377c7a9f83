"""``posture keys``: list and rotate the OpenID provider's signing keys.

``posture keys list`` shows every key with its algorithm, state (active, retiring until ...,
retired) and whether the JWKS publishes it. ``posture keys rotate [--alg RS256|ES256]
[--overlap 1d]`` makes a new key the active signer; the previous one stays published for the
overlap so tokens it signed keep verifying. Running servers pick the rotation up within seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click
from flask.cli import with_appcontext
from rich.console import Console
from rich.table import Table

from mdm_core.support.durations import format_duration, parse_config_duration
from posture_gateway.cli.base import DURATION
from posture_gateway.oidc.server import current_provider
from posture_gateway.signing.key_ring import KeyRingError
from posture_gateway.state import state

__all__ = ["keys_group", "parse_duration"]


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``12h``, ``1d`` -> timedelta (raises ``click.BadParameter``): the one
    duration syntax of config and policies (:mod:`mdm_core.support.durations`)."""
    try:
        value = parse_config_duration(text, bare_seconds=False)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if value <= timedelta(0):
        raise click.BadParameter(f"{text!r}: a duration must be longer than zero")
    return value


@click.group("keys")
def keys_group() -> None:
    """Signing keys of the OpenID provider (ID tokens, access tokens)."""


@keys_group.command("list")
@with_appcontext
def list_keys() -> None:
    """Show every signing key and whether it is published."""

    ring = current_provider().keys
    now = datetime.now(UTC)
    table = Table("kid", "alg", "created", "state", "in JWKS")
    active = {alg: ring.active(alg).kid for alg in ring.supported_algs()}
    for key in ring.keys:
        if key.kid in active.values():
            state = "active"
        elif key.retire_after and now < key.retire_after:
            state = f"retiring until {key.retire_after:%Y-%m-%d %H:%M} UTC"
        else:
            state = "retired"
        published = "yes" if key.is_published(now) else "no"
        table.add_row(key.kid, key.alg, f"{key.created_at:%Y-%m-%d %H:%M}", state, published)
    Console().print(table)


@keys_group.command("rotate")
@click.option("--alg", type=click.Choice(["RS256", "ES256"]), default="RS256", show_default=True)
@click.option(
    "--overlap",
    type=DURATION,
    default=None,
    help="How long the previous key stays published (default: oidc.key_overlap), e.g. 1d.",
)
@with_appcontext
def rotate(alg: str, overlap: timedelta | None) -> None:
    """Make a new key the active signer; keep the previous one published for the overlap."""

    window = overlap if overlap is not None else state().settings.oidc.key_overlap
    try:
        key = current_provider().keys.rotate("RS256" if alg == "RS256" else "ES256", overlap=window)
    except KeyRingError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"new {key.alg} signing key {key.kid}; the previous one stays published for "
        f"{format_duration(window)}"
    )
