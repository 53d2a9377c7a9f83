"""``posture sync ldap [--full]``: sync the directory mirror from LDAP / Active Directory now.

Reads the ``ldap`` section of the configuration (docs/directory-sync.md), shows a progress
bar per phase (users read, groups read, users written) and ends with a summary: added,
changed, disabled, deleted, groups, skipped. Without ``--full`` it runs an incremental sync
from the stored cursor (a full one when there is none); only a full sync detects deletions.
``--user NAME`` looks one account up (the name is escaped, never a pattern) and syncs nothing.
The run is audited as the admin who ran it. Errors are one line with the reason
(``ldap.tls``, ``ldap.bind``, ...); the bind password never appears.
"""

from __future__ import annotations

import getpass
from typing import Any

import click
from flask.cli import with_appcontext
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from idp_connectors.ldap import LdapError, LdapSync, LdapSyncResult
from posture_gateway.cli.base import ConfigProblem, RuntimeProblem
from posture_gateway.cli.tables import count_table
from posture_gateway.state import state

__all__ = ["sync_group", "render_ldap_summary"]

_PHASES = {"users": "reading users", "groups": "reading groups", "write": "writing the mirror"}


@click.group("sync")
def sync_group() -> None:
    """Sync the directory mirror from an outside directory."""


def _state() -> Any:
    return state()


@sync_group.command("ldap")
@click.option("--full", is_flag=True, help="Read everything (detects deletions).")
@click.option("--user", "username", default=None, help="Only look this username up; no sync.")
@with_appcontext
def ldap_cmd(full: bool, username: str | None) -> None:
    """Sync users and nested groups from the configured LDAP / AD directory."""
    st = _state()
    settings = st.settings.ldap
    if settings is None:
        raise ConfigProblem("no `ldap` section in the configuration (see docs/directory-sync.md)")
    console = Console(stderr=False)
    actor = f"admin:{getpass.getuser()}"
    try:
        if username is not None:
            found = LdapSync(
                settings,
                st.core.storage,
                actor=actor,
                source_of_truth=st.core.directory.source_of_truth,
            ).find_users(username)
            for user in found:
                state = "DISABLED" if user.disabled else "active"
                console.print(f"{escape(user.username)}  {user.id}  {escape(user.dn)}  {state}")
            if not found:
                raise RuntimeProblem(f"no LDAP user {username!r}")
            return
        with _progress(console) as progress:
            tasks: dict[str, Any] = {}

            def report(phase: str, advance: int, total: int | None) -> None:
                if phase not in tasks:
                    tasks[phase] = progress.add_task(_PHASES.get(phase, phase), total=total)
                progress.update(tasks[phase], advance=advance)
                if total is not None:
                    progress.update(tasks[phase], total=total)

            sync = LdapSync(
                settings,
                st.core.storage,
                progress=report,
                actor=actor,
                source_of_truth=st.core.directory.source_of_truth,
            )
            result = sync.run(full=full)
            for task in tasks.values():
                progress.update(task, completed=progress.tasks[task].total or 0)
    except LdapError as exc:
        raise RuntimeProblem(f"{exc.reason}: {exc}") from exc
    render_ldap_summary(console, result)


def _progress(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def render_ldap_summary(console: Console, result: LdapSyncResult) -> None:
    table = count_table(
        f"LDAP {result.mode} sync of {result.source} in {result.seconds:.1f}s",
        (
            ("added", result.added),
            ("changed", result.changed),
            ("disabled", result.disabled),
            ("deleted", result.deleted),
            ("skipped", result.skipped),
        ),
        shown=10,
    )
    table.add_row(
        "groups",
        str(result.groups_added + result.groups_changed + result.groups_deleted),
        f"+{result.groups_added} added, {result.groups_changed} changed, "
        f"{result.groups_deleted} deleted",
    )
    table.caption = (
        f"read {result.users_read} users, {result.groups_read} groups; cursor {result.cursor}"
        + (f"; scope by {result.nested}" if result.nested else "")
    )
    console.print(table)
