"""``posture directory``: the directory mirror, until LDAP and SCIM sources arrive.

- ``posture directory list`` shows every user (source, active, effective groups) and group;
- ``posture directory show USER`` one user (by id or username) with direct and effective
  groups and their enrolled devices;
- ``posture directory import FILE`` writes a YAML or CSV directory file
  (:mod:`posture_gateway.directory.file`) into the mirror as the ``import`` source:
  idempotent, all or nothing, with a summary (added / changed / unchanged / groups).
  ``--prune`` disables imported users that the file no longer lists. An import claims the
  users file's record of the same user id (the password stays in the users file); records of
  other sources are skipped and listed. With ``directory.source_of_truth`` configured, records
  are resolved attribute by attribute instead and the import lists every value it overrode
  or that was ignored (a higher-priority source wins); the devices of users whose groups
  changed converge at once (:mod:`mdm_core.device.convergence`).

Commands run in the server's app context (same settings and database as ``posture serve``).
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

import click
from flask.cli import with_appcontext
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mdm_core.directory.mirror import effective_group_names
from mdm_core.directory.sync import SyncSummary, sync_source
from mdm_core.storage.directory import MemberKind
from posture_gateway.cli.tables import count_table
from posture_gateway.directory.file import load_directory_file
from posture_gateway.directory.local_users import USERS_FILE_SOURCE
from posture_gateway.state import state

__all__ = ["directory_group", "IMPORT_SOURCE", "render_summary"]

#: The ``source`` tag of mirror records written by ``posture directory import``.
IMPORT_SOURCE = "import"


def _core() -> Any:

    return state().core


@click.group("directory")
def directory_group() -> None:
    """The directory mirror: users and groups decisions are made on."""


@directory_group.command("list")
@click.option("--source", default=None, help="Only this source (users_file, import, ...).")
@with_appcontext
def list_cmd(source: str | None) -> None:
    """List every user and group of the directory mirror."""
    core = _core()
    console = Console()
    with core.storage.unit_of_work() as uow:
        users = uow.directory_users.list(source)
        groups = uow.directory_groups.list(source)
        rows = [(u, sorted(effective_group_names(uow, u.id))) for u in users]
        members = {g.id: len(uow.memberships.members([g.id])) for g in groups}
    table = Table(title=f"{len(users)} users", title_justify="left")
    for column in ("username", "id", "source", "active", "groups (effective)"):
        table.add_column(column, overflow="fold")
    for user, names in rows:
        table.add_row(
            escape(user.username),
            escape(user.id),
            user.source,
            "yes" if user.active else "[red]DISABLED[/red]",
            escape(", ".join(names) or "-"),
        )
    console.print(table)
    gtable = Table(title=f"{len(groups)} groups", title_justify="left")
    for column in ("name", "id", "source", "direct members"):
        gtable.add_column(column, overflow="fold")
    for group in groups:
        gtable.add_row(escape(group.name), escape(group.id), group.source, str(members[group.id]))
    console.print(gtable)


@directory_group.command("show")
@click.argument("user")
@with_appcontext
def show_cmd(user: str) -> None:
    """Show USER (id or username): account, groups and enrolled devices."""
    core = _core()
    with core.storage.unit_of_work() as uow:
        found = uow.directory_users.get(user) or uow.directory_users.find_by_username(user)
        if found is None:
            raise click.ClickException(
                f"no user {user!r} in the directory (see `posture directory list`)"
            )
        direct_ids = [m.group_id for m in uow.memberships.parents(MemberKind.USER, [found.id])]
        direct = sorted(uow.directory_groups.names(direct_ids).values())
        effective = sorted(effective_group_names(uow, found.id))
        devices = _devices_of(uow, found.id)
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for label, value in (
        ("id", found.id),
        ("username", found.username),
        ("name", found.display_name or "-"),
        ("email", found.email or "-"),
        ("source", found.source),
        ("active", "yes" if found.active else "[red]DISABLED[/red] (every login is refused)"),
        ("groups", ", ".join(direct) or "-"),
        ("effective groups", ", ".join(effective) or "-"),
        ("devices", ", ".join(devices) or "none enrolled"),
    ):
        table.add_row(label, value if label == "active" else escape(value))
    Console().print(table)


def _devices_of(uow: Any, user_id: str) -> list[str]:
    return [
        f"{d.id} ({d.platform.value}, {d.status.value})" for d in uow.devices.list_for_user(user_id)
    ]


@directory_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--prune", is_flag=True, help="Disable imported users the file no longer lists.")
@with_appcontext
def import_cmd(file: Path, prune: bool) -> None:
    """Import users and nested groups from a YAML or CSV FILE (idempotent)."""
    parsed = load_directory_file(file)  # ConfigFileError: every file:line problem, exit 2
    core = _core()
    summary = sync_source(
        core.storage,
        IMPORT_SOURCE,
        parsed.users,
        parsed.groups,
        prune=prune,
        takes_over=(USERS_FILE_SOURCE,),
        actor=f"admin:{getpass.getuser()}",
        source_of_truth=core.directory.source_of_truth,
    )
    render_summary(Console(), summary, file)
    # The devices of users whose groups changed converge now (the server's bus consumer
    # would too, from the same events; the keys make the two one set of commands).
    for user_id in summary.groups_changed_users:
        core.convergence.converge_user(user_id, trigger="directory.import")


def render_summary(console: Console, summary: SyncSummary, file: Path | None = None) -> None:
    table = count_table(
        f"directory import{f' of {file}' if file else ''}",
        (
            ("added", summary.added),
            ("changed", summary.changed),
            ("unchanged", summary.unchanged),
            ("disabled", summary.disabled),
            ("skipped (other source)", summary.skipped),
            ("groups added", summary.groups_added),
            ("groups changed", summary.groups_changed),
        ),
        shown=20,
    )
    table.caption = f"memberships +{summary.memberships_added} / -{summary.memberships_removed}"
    console.print(table)
    if summary.overrides:
        console.print("source of truth (user.attribute: winner value over loser value):")
        for label, found in (("overrode", summary.overrode), ("ignored", summary.ignored)):
            for override in found:
                console.print(
                    f"  {label}: {escape(str(override))}", soft_wrap=True, highlight=False
                )
    if summary.groups_changed_users:
        shown = ", ".join(summary.groups_changed_users[:20])
        console.print(
            f"groups changed for: {escape(shown)} (their devices converge now)",
            soft_wrap=True,
            highlight=False,
        )
