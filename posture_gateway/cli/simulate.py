"""``posture simulate``: drive a simulated fleet through the real device protocol.

Runs inside the server's app context (same settings and database as ``posture serve``): the
simulator provisions enrollment tokens and serials through the MDM core's enrollment
service, then every device speaks HTTP, either in-process to this app (the default, through
``httpx.WSGITransport``) or to a running server (``--url``). Progress is a rich bar; the
summary is a table per platform with check-in latency percentiles.
"""

from __future__ import annotations

from typing import Any

import click
import httpx
from flask import current_app
from flask.cli import with_appcontext
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mdm_core.simulator.fleet import (
    FleetSpec,
    ServiceProvisioner,
    SimDevice,
    SimSummary,
    Simulator,
    parse_platform_mix,
)
from posture_gateway.state import state

__all__ = ["simulate_cmd", "summary_table", "run_simulation"]


def _console() -> Console:
    # Made per command, not at import: rich reads the terminal width (COLUMNS) when a
    # Console is created, and a module-level one would freeze whatever it was at import.
    return Console()


def summary_table(summary: SimSummary) -> Table:
    table = Table(title=f"{len(summary.devices)} simulated devices")
    cols = ("devices", "enrolled", "byod", "bad", "jailbroken", "checkins", "commands_acked")
    table.add_column("platform")
    states = ("compliant", "noncompliant", "quarantined", "errors")
    for col in (*cols, *states):
        table.add_column(col.replace("_", " "), justify="right")
    totals: dict[str, int] = {}
    for platform, row in summary.by_platform().items():
        table.add_row(platform, *(str(row.get(c, 0)) for c in (*cols, *states)))
        for key, value in row.items():
            totals[key] = totals.get(key, 0) + value
    table.add_section()
    table.add_row("all", *(str(totals.get(c, 0)) for c in (*cols, *states)))
    rate = summary.checkins / summary.elapsed_s if summary.elapsed_s else 0.0
    p50, p99 = summary.percentile_ms(0.50), summary.percentile_ms(0.99)
    table.caption = (
        f"{summary.checkins} check-ins in {summary.elapsed_s:.2f}s ({rate:.0f}/s); "
        f"latency p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    )
    return table


def run_simulation(
    simulator_args: dict[str, Any], spec: FleetSpec, *, show_progress: bool = True
) -> SimSummary:
    """Run ``spec`` with a rich progress bar (enrollment + every round of every device)."""
    total = spec.devices * (1 + spec.rounds)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_console(),
        disable=not show_progress,
        transient=False,
    ) as progress:
        task = progress.add_task("simulating", total=total)

        def advance(what: str, device: SimDevice) -> None:
            steps = 1 + spec.rounds if what == "enroll_failed" else 1
            progress.advance(task, steps)

        sim = Simulator(on_progress=advance, **simulator_args)
        try:
            return sim.run(spec)
        finally:
            sim.close()


@click.command("simulate")
@click.option("--devices", "-n", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option(
    "--platform-mix",
    default="all",
    show_default=True,
    help="Weights, e.g. ios=3,android=2,windows=1 (all: every platform equally).",
)
@click.option("--jailbroken-ratio", type=click.FloatRange(0, 1), default=0.1, show_default=True)
@click.option(
    "--encryption-off-ratio", type=click.FloatRange(0, 1), default=0.05, show_default=True
)
@click.option("--old-os-ratio", type=click.FloatRange(0, 1), default=0.05, show_default=True)
@click.option("--rounds", type=click.IntRange(1, 1000), default=1, show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 256), default=8, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--url", help="A running server's base URL (default: in-process to this app).")
@with_appcontext
def simulate_cmd(
    devices: int,
    platform_mix: str,
    jailbroken_ratio: float,
    encryption_off_ratio: float,
    old_os_ratio: float,
    rounds: int,
    concurrency: int,
    seed: int,
    url: str | None,
) -> None:
    """Simulate a fleet of devices (every platform) through the device protocol."""

    try:
        mix = parse_platform_mix(platform_mix)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--platform-mix") from exc
    st = state()
    transport: httpx.BaseTransport | None = None
    if url is None:
        url = st.settings.public_url
        transport = httpx.WSGITransport(app=current_app._get_current_object())  # type: ignore[attr-defined]
    spec = FleetSpec(
        devices=devices,
        platform_mix=mix,
        jailbroken_ratio=jailbroken_ratio,
        encryption_off_ratio=encryption_off_ratio,
        old_os_ratio=old_os_ratio,
        rounds=rounds,
        seed=seed,
    )
    summary = run_simulation(
        {
            "base_url": url,
            "provisioner": ServiceProvisioner(st.core.enrollment),
            "transport": transport,
            "concurrency": concurrency,
        },
        spec,
    )
    console = _console()
    console.print(summary_table(summary))
    errors = summary.errors
    for line in errors[:10]:
        console.print(f"[red]{line}[/]")
    if errors:
        raise click.ClickException(f"{len(errors)} device operations failed")
