"""What ``posture agent`` prints: the BYOD privacy notice and the check-in summary.

The privacy notice is what a person consents to, so nothing of it is ever cut: the
description is part of the panel's body (rich truncates panel titles and subtitles to one
line), every item wraps instead of being elided, and on a narrow terminal the two lists are
stacked instead of side by side. The check-in summary says in words what the server
answered (compliance state, outcome, each reason with its fix, the commands carried out);
``--json`` prints the same as one JSON document for machines.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from mdm_core.agent.agent import CheckinResult

__all__ = ["notice_panel", "render_checkin", "checkin_json", "STACK_BELOW"]

#: Below this many columns the notice's two lists are stacked, not side by side.
STACK_BELOW = 72

_STATE_STYLE = {
    "compliant": "bold green",
    "noncompliant": "bold yellow",
    "quarantined": "bold red",
    "unknown": "bold red",
}
_OUTCOME_STYLE = {"allow": "green", "warn": "yellow", "restrict": "dark_orange", "block": "red"}


def _bullets(title: str, style: str, items: list[str]) -> Table:
    table = Table.grid()
    table.add_column(overflow="fold")
    table.add_row(Text(title, style=f"bold {style}"))
    for item in items or ["(nothing listed)"]:
        table.add_row(Text(f"• {item}", style=style))
    return table


def notice_panel(notice: dict[str, Any], width: int) -> Panel:
    """The privacy notice as a panel that fits ``width`` columns without cutting anything."""
    can = [str(x) for x in notice.get("can_see") or []]
    cannot = [str(x) for x in notice.get("cannot_see") or []]
    parts: list[RenderableType] = []
    description = str(notice.get("description") or "").strip()
    if description:
        parts.append(Text(description, overflow="fold"))
        parts.append(Text(""))
    left = _bullets("Your organisation CAN see", "green", can)
    right = _bullets("It CANNOT see", "red", cannot)
    if width < STACK_BELOW:
        parts.extend([left, Text(""), right])
    else:
        columns = Table.grid(padding=(0, 2), expand=True)
        columns.add_column(ratio=1, overflow="fold")
        columns.add_column(ratio=1, overflow="fold")
        columns.add_row(left, right)
        parts.append(columns)
    return Panel(
        Group(*parts),
        title=Text(f"Privacy notice ({notice.get('profile', '?')})", overflow="fold"),
        title_align="left",
    )


def checkin_json(result: CheckinResult) -> dict[str, Any]:
    """The check-in answer and the commands carried out, as one JSON-able document."""
    return {
        "next_checkin_s": result.answer.next_checkin_s,
        "compliance": result.answer.compliance or None,
        "collect": list(result.answer.collect),
        "commands": [
            {
                "id": command.get("id"),
                "type": command.get("type"),
                "status": outcome.status,
            }
            for command, outcome in result.executed
        ],
    }


def render_checkin(console: Console, result: CheckinResult, *, as_json: bool = False) -> None:
    """Print what the server answered, in words (or as JSON with ``as_json``)."""
    if as_json:
        console.print_json(json.dumps(checkin_json(result)))
        return
    compliance = result.answer.compliance or {}
    state = str(compliance.get("state") or "unknown")
    outcome = str(compliance.get("outcome") or "unknown")
    style = _STATE_STYLE.get(state, "bold")
    lines = [
        f"[bold]checked in[/bold]: this device is [{style}]{escape(state)}[/]"
        f" (login outcome [{_OUTCOME_STYLE.get(outcome, 'bold')}]{escape(outcome)}[/])",
        f"next check-in in {result.answer.next_checkin_s}s",
    ]
    policies = compliance.get("policy_ids") or []
    if policies:
        lines.append("policies: " + escape(", ".join(str(p) for p in policies)))
    console.print("\n".join(lines), highlight=False)
    reasons = compliance.get("reasons") or []
    if reasons:
        table = Table(title="what to fix", show_lines=True, expand=False)
        table.add_column("check", overflow="fold")
        table.add_column("problem", overflow="fold")
        table.add_column("how to fix it", overflow="fold")
        for reason in reasons:
            where = "/".join(
                str(x) for x in (reason.get("policy_id"), reason.get("rule_id")) if x
            ) or str(reason.get("code") or "")
            table.add_row(
                escape(where),
                escape(str(reason.get("message") or "")),
                escape(str(reason.get("remediation") or "")),
            )
        console.print(table)
    elif state == "compliant":
        console.print("nothing to fix", highlight=False)
    for command, done in result.executed:
        console.print(
            f"command {escape(str(command.get('type')))} ({escape(str(command.get('id')))}): "
            f"{escape(done.status)}",
            highlight=False,
        )
