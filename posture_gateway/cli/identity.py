"""``posture users link|unlink|links``: the admin side of external identity links.

An identity from an upstream IdP, Entra, Okta or a posture-API caller is (issuer, subject);
with ``link_by: none`` (the default for upstreams, Entra and Okta) only identities an admin
linked here get in:

- ``posture users link USER_ID --issuer ISS --subject SUB`` links (ISS, SUB) to USER_ID;
- ``posture users unlink --issuer ISS --subject SUB`` removes a link;
- ``posture users links USER_ID`` lists the user's links.

Issuers: an upstream's ``issuer`` URL; ``entra:<tenant id>`` (subject: the Entra object id
``oid``); the Okta hook's ``identity_issuer`` (default ``okta``; subject: the Okta user id);
``posture-api:<caller>`` (subject: the name the caller sends in ``user``). Every change is
audited; commands run in the server's app context (same settings and database as
``posture serve``).
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime

import click
from flask.cli import with_appcontext

from mdm_core.domain.errors import Conflict
from mdm_core.storage.identity_links import IdentityLink
from posture_gateway.state import state

__all__ = ["register"]


def _actor(actor: str | None) -> str:
    return actor or f"admin:{getpass.getuser()}"


@click.command("link")
@click.argument("user_id")
@click.option("--issuer", required=True, help="The identity's issuer (see `users link --help`).")
@click.option("--subject", required=True, help="The issuer's stable id for the user.")
@click.option("--actor", default=None, help="Who links it (default: admin:<login>).")
@with_appcontext
def link_cmd(user_id: str, issuer: str, subject: str, actor: str | None) -> None:
    """Link the identity (ISSUER, SUBJECT) to the directory user USER_ID."""

    who = _actor(actor)
    storage = state().core.storage
    try:
        with storage.unit_of_work() as uow:
            if uow.directory_users.get(user_id) is None:
                raise click.ClickException(f"no directory user {user_id!r}")
            created = uow.identity_links.link(
                IdentityLink(issuer, subject, user_id, datetime.now(UTC), "admin")
            )
            uow.audit.record(
                who,
                "identity.linked",
                f"user:{user_id}",
                "linked" if created else "unchanged",
                {"issuer": issuer, "subject": subject, "method": "admin"},
            )
    except (Conflict, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{'linked' if created else 'already linked'}: {issuer} {subject} -> {user_id}")


@click.command("unlink")
@click.option("--issuer", required=True)
@click.option("--subject", required=True)
@click.option("--actor", default=None, help="Who unlinks it (default: admin:<login>).")
@with_appcontext
def unlink_cmd(issuer: str, subject: str, actor: str | None) -> None:
    """Remove the link of (ISSUER, SUBJECT): that identity no longer gets in."""

    with state().core.storage.unit_of_work() as uow:
        link = uow.identity_links.get(issuer, subject)
        if link is None or not uow.identity_links.unlink(issuer, subject):
            raise click.ClickException("no such link")
        uow.audit.record(
            _actor(actor),
            "identity.unlinked",
            f"user:{link.user_id}",
            "unlinked",
            {"issuer": issuer, "subject": subject},
        )
    click.echo(f"unlinked: {issuer} {subject} (was {link.user_id})")


@click.command("links")
@click.argument("user_id")
@with_appcontext
def links_cmd(user_id: str) -> None:
    """List the identities linked to USER_ID."""

    with state().core.storage.unit_of_work() as uow:
        found = uow.identity_links.for_user(user_id)
    if not found:
        click.echo(f"no identities linked to {user_id}")
    for link in found:
        when = link.linked_at.isoformat(timespec="seconds")
        click.echo(f"{link.issuer}\t{link.subject}\t{link.method}\t{when}")


def register(group: click.Group) -> None:
    """Add ``link``, ``unlink`` and ``links`` to the ``posture users`` group."""
    for command in (link_cmd, unlink_cmd, links_cmd):
        group.add_command(command)
