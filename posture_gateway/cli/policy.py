"""``posture policy``: validate policy files and explain decisions.

- ``posture policy check [DIR]`` validates every policy file (YAML, schema, CEL, ids,
  conflicts; with ``--directory`` also group references against the directory mirror of the
  configured database) and prints each mistake as ``file:line: reason``. Exits 1 on any
  mistake, 0 when the set is valid: usable in CI and pre-commit.
- ``posture policy what-if --user U --device D [--app A] [--json]`` prints the decision the
  user would get on that device for that app, and why, without logging anyone in.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from flask.cli import with_appcontext
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from mdm_core.access.whatif import what_if
from mdm_core.directory.mirror import DirectoryService
from mdm_core.policy.compiled import CompiledPolicySet
from mdm_core.policy.errors import PolicySetUnavailable, Problem
from mdm_core.policy.loader import check_policy_directory
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage
from posture_gateway.access.device_gate import evaluator
from posture_gateway.settings import load_settings
from posture_gateway.state import state

__all__ = ["policy_group", "render_problems", "render_summary"]

_OUTCOME_STYLE = {
    "allow": "bold green",
    "warn": "bold yellow",
    "restrict": "bold dark_orange",
    "block": "bold red",
}


@click.group("policy")
def policy_group() -> None:
    """Policy files: validate them, explain decisions."""


def render_problems(console: Console, problems: list[Problem]) -> None:
    """One ``file:line: reason`` line per problem (editors and CI can jump to them)."""
    for problem in problems:
        console.print(
            f"[cyan]{escape(problem.file)}:{problem.line}[/cyan]: {escape(problem.reason)}",
            soft_wrap=True,
            highlight=False,
        )
    console.print(f"[bold red]{len(problems)} problem(s); the policy set is refused[/bold red]")


def render_summary(console: Console, policies: CompiledPolicySet) -> None:
    table = Table(title="policy set", title_style="bold green")
    table.add_column("kind")
    table.add_column("id", style="cyan")
    table.add_column("scope")
    table.add_column("details")
    for p in policies.compliance:
        scope = _scope(p.assign.groups, p.assign.platforms, p.assign.ownership)
        critical = sum(1 for r in p.rules if r.critical)
        mode = "enforce" if p.enforce else "report-only"
        table.add_row(
            "CompliancePolicy",
            p.id,
            scope,
            f"{mode}, {len(p.rules)} rules ({critical} critical), "
            f"max posture age {int(p.max_posture_age.total_seconds())}s",
        )
    for a in policies.access_policies:
        table.add_row(
            "AccessPolicy",
            a.id,
            ", ".join(sorted(a.apps)),
            f"{a.sensitivity}: warn={a.warn.value}, restrict={a.restrict.value}",
        )
    for c in policies.configuration:
        table.add_row(
            "ConfigurationPolicy",
            c.id,
            _scope(c.assign.groups, c.assign.platforms, c.assign.ownership),
            f"apps +{len(c.install_apps)}/-{len(c.remove_apps)}, "
            f"certificates +{len(c.install_certificates)}/-{len(c.remove_certificates)}",
        )
    for o in policies.offboarding:
        table.add_row(
            "OffboardingPolicy",
            o.id,
            _scope(o.assign.groups, None, None),
            ", ".join(f"{k.value}: {v.value}" for k, v in sorted(o.actions.items())),
        )
    for ownership, profile in sorted(policies.privacy.items()):
        table.add_row(
            "PrivacyProfile", profile.id, ownership.value, f"collects {len(profile.collect)} fields"
        )
    console.print(table)
    console.print(
        f"[green]valid[/green]: {len(policies.policy_ids)} documents in {len(policies.files)} "
        f"files, fingerprint {policies.fingerprint[:12]}"
    )


def _scope(groups: Any, platforms: Any, ownership: Any) -> str:
    parts = []
    parts.append("groups " + ", ".join(sorted(groups)) if groups else "everyone")
    if platforms:
        parts.append(", ".join(sorted(p.value for p in platforms)))
    if ownership:
        parts.append(", ".join(sorted(o.value for o in ownership)))
    return "; ".join(parts)


@policy_group.command("check")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--directory-groups/--no-directory-groups",
    "with_groups",
    default=False,
    help="Also check group references against the directory mirror (opens the database).",
)
@click.option("--quiet", "-q", is_flag=True, help="Print problems only.")
def check_cmd(directory: Path | None, with_groups: bool, quiet: bool) -> None:
    """Validate the policy files under DIRECTORY (default: the configured policy_dir)."""
    console = Console()
    known: frozenset[str] | None = None
    if directory is None or with_groups:
        settings = load_settings(_config_file())
        directory = directory or settings.policy_dir
        if with_groups:
            known = _directory_groups(settings)
    policies, problems = check_policy_directory(directory, known_groups=known)
    if problems:
        render_problems(console, problems)
        raise SystemExit(1)
    assert policies is not None
    if not quiet:
        render_summary(console, policies)


def _config_file() -> Path | None:
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    value = ctx.find_root().params.get("config")
    return value if isinstance(value, Path) else None


def _directory_groups(settings: Any) -> frozenset[str]:

    database = Database(settings.effective_database_url)
    try:
        return DirectoryService(SqlStorage(database)).group_names()
    finally:
        database.dispose()


@policy_group.command("what-if")
@click.option("--user", "user_id", required=True, help="Directory user id.")
@click.option("--device", "device_id", required=True, help="Device id.")
@click.option("--app", default=None, help="OIDC client_id or SAML entity id.")
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
@with_appcontext
def what_if_cmd(user_id: str, device_id: str, app: str | None, as_json: bool) -> None:
    """Show the decision USER would get on DEVICE for APP, and why (no login happens)."""

    core = state().core
    try:
        core.policies.current()
    except PolicySetUnavailable as exc:
        raise click.ClickException(f"{exc} (every decision blocks)") from exc
    result = what_if(
        evaluator(),
        user_id=user_id,
        device_id=device_id,
        app=app,
        now=datetime.now(UTC),
    )
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    render_what_if(Console(), result)


def render_what_if(console: Console, result: dict[str, Any]) -> None:
    decision, given = result["decision"], result["input"]
    outcome = decision["outcome"]
    user = given["user"]
    device = given["device"]
    posture = given["posture"]
    lines = [
        f"user [cyan]{user['id']}[/cyan]: "
        + (
            f"{'active' if user['active'] else 'DISABLED'}, "
            f"groups {', '.join(user['groups']) or '-'}"
            if user["known"]
            else "[red]not in the directory[/red]"
        ),
        f"device [cyan]{given['device_id']}[/cyan]: "
        + (
            f"{device['platform']} {device['ownership']}, status {device['status']}, "
            f"owner {device['user_id']}"
            if device
            else "[red]unknown[/red]"
        ),
        f"app: {given['app'] or '-'}",
        "posture: "
        + (
            f"received {posture['received_at']} ({int(posture['age_s'])}s old)"
            if posture
            else "[red]none reported[/red]"
        ),
        f"policy set {given['policy_set'][:12]}; policies evaluated: "
        + (", ".join(decision["evaluated_policy_ids"]) or "none"),
    ]
    scopes = decision["restrictions"]["allowed_scopes"]
    if scopes is not None:
        lines.append(f"allowed scopes: {' '.join(scopes)}")
    if decision["quarantine"]:
        lines.append("[bold red]device is (to be) quarantined[/bold red]")
    console.print(
        Panel(
            "\n".join(lines),
            title=f"[{_OUTCOME_STYLE.get(outcome, 'bold')}]{outcome.upper()}[/]",
            expand=False,
        )
    )
    _reasons_table(console, "why", decision["reasons"])
    if decision["report_only"]:
        _reasons_table(console, "report-only findings (not enforced)", decision["report_only"])


def _reasons_table(console: Console, title: str, reasons: list[dict[str, Any]]) -> None:
    if not reasons:
        console.print(f"{title}: nothing failed")
        return
    table = Table(title=title, show_lines=True)
    table.add_column("outcome")
    table.add_column("reason", style="cyan")
    table.add_column("severity")
    table.add_column("message")
    table.add_column("remediation")
    table.add_column("since / escalates")
    for r in reasons:
        where = "/".join(x for x in (r["policy_id"], r["rule_id"]) if x) or r["code"]
        timing = " → ".join(x for x in (r["first_failed_at"], r["escalates_at"]) if x)
        table.add_row(
            f"[{_OUTCOME_STYLE.get(r['outcome'], '')}]{r['outcome']}[/]",
            where
            if r["code"] == "rule_failed"
            else f"{r['code']} {where if where != r['code'] else ''}",
            r["severity"] or "",
            r["message"],
            r["remediation"] or "",
            timing,
        )
    console.print(table)
