"""``posture agent``: run the reference agent on this Linux host.

Commands (none of them opens the server's database; the agent talks to the server over HTTP
only):

- ``posture agent enroll --server URL (--token T | [--serial S] --enrollment-secret X)
  --ownership corporate|byod`` generates the device key (0600, in the state directory), shows
  the BYOD privacy notice and asks for consent, and enrolls; enrollment by serial needs the
  serial's enrollment secret (``--enrollment-secret`` or, better, ``POSTURE_ENROLLMENT_SECRET``:
  a flag is visible in the process list); the agent never logs or stores it;
- ``posture agent checkin`` collects posture, checks in once, carries out the commands;
- ``posture agent run`` is the daemon loop (check in, long-poll, repeat);
- ``posture agent serve-loopback --gateway-origin https://gw.example.com`` serves login
  proofs on 127.0.0.1 to the gateway's login page only;
- ``posture agent posture`` prints what the collector sees on this host.

``posture agent --host-root DIR`` (``POSTURE_AGENT_HOST_ROOT``) makes the collector read the
host's files (``/etc/os-release``, ``/proc``, ``/sys``) under DIR instead of ``/``: an agent in
a container with the host's ``/`` mounted at DIR reports the host, not the container.

The reference agent never acts destructively: lock, wipe and the other commands are
recorded in ``<state-dir>/commands.jsonl`` and acknowledged.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from mdm_core.agent.agent import Agent, CheckinResult, NotEnrolled, agent_report
from mdm_core.agent.client import ProtocolError
from mdm_core.agent.collector_linux import LinuxPosture, collect
from mdm_core.agent.loopback import DEFAULT_PORT, LoopbackHelper
from mdm_core.support.durations import DURATION_HELP, parse_config_duration
from posture_gateway.cli.agent_output import notice_panel, render_checkin

__all__ = ["agent_group", "default_state_dir"]

console = Console()


def default_state_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/posture-agent")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "posture-agent"


state_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="POSTURE_AGENT_STATE_DIR",
    default=default_state_dir,
    show_default="/var/lib/posture-agent as root, else ~/.local/state/posture-agent",
    help="Where the agent keeps its key (0600), enrollment and command log.",
)


def _host_root() -> Path:
    ctx = click.get_current_context(silent=True)
    root = ctx.find_object(_HostRoot) if ctx is not None else None
    return root.path if root is not None else Path("/")


class _HostRoot:
    def __init__(self, path: Path) -> None:
        self.path = path


def _collector() -> Callable[[], LinuxPosture]:
    """The collector for ``--host-root``, resolved now: the click context is per thread, and
    the login helper collects in its request threads."""
    return functools.partial(collect, _host_root())


def _collect() -> LinuxPosture:
    return _collector()()


def _agent(state_dir: Path, server: str | None = None) -> Agent:
    try:
        return Agent(state_dir, server_url=server, collector=_collector())
    except NotEnrolled as exc:
        raise click.ClickException(f"{exc} (run `posture agent enroll --server URL ...`)") from exc


def _show_notice(notice: dict[str, Any]) -> None:
    console = Console()  # per call: the terminal width is read now, not at import
    console.print(notice_panel(notice, console.width))


def _print_result(result: CheckinResult) -> None:
    render_checkin(Console(), result)


@click.group("agent")
@click.option(
    "--host-root",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    envvar="POSTURE_AGENT_HOST_ROOT",
    default=Path("/"),
    show_default=True,
    help="Where the host's filesystem is seen (the host's / mounted into a container).",
)
@click.pass_context
def agent_group(ctx: click.Context, host_root: Path) -> None:
    """The reference device agent (Linux)."""
    ctx.obj = _HostRoot(host_root)


@agent_group.command("posture")
def posture_cmd() -> None:
    """Print what the collector establishes on this host (None: could not tell)."""
    console.print_json(json.dumps(_collect().as_dict()))


@agent_group.command("enroll")
@state_option
@click.option("--server", required=True, help="The MDM base URL, e.g. https://mdm.example.com")
@click.option("--token", help="A single-use enrollment token from your admin.")
@click.option("--serial", help="Enroll by this host's pre-registered serial number.")
@click.option(
    "--enrollment-secret",
    envvar="POSTURE_ENROLLMENT_SECRET",
    default=None,
    show_envvar=True,
    help="The serial's enrollment secret from `posture enroll register-serial` (serial "
    "enrollment needs it; prefer the environment variable: a flag shows in the process list).",
)
@click.option("--ownership", type=click.Choice(["corporate", "byod"]), required=True)
@click.option("--accept-notice", is_flag=True, help="Accept the BYOD privacy notice unasked.")
def enroll_cmd(
    state_dir: Path,
    server: str,
    token: str | None,
    serial: str | None,
    enrollment_secret: str | None,
    ownership: str,
    accept_notice: bool,
) -> None:
    """Generate the device key and enroll this host."""
    if token is not None and serial is not None:
        raise click.UsageError("give --token or --serial, not both")
    if ownership == "byod" and token is None:
        raise click.UsageError("BYOD enrollment needs --token")
    if token is None and serial is None and _collect().serial_number is None:
        raise click.UsageError("this host reports no serial number: give --serial or --token")
    if token is None and not enrollment_secret:
        raise click.UsageError(
            "enrollment by serial needs the serial's enrollment secret: "
            "--enrollment-secret or POSTURE_ENROLLMENT_SECRET"
        )

    def consent(notice: dict[str, Any]) -> bool:
        _show_notice(notice)
        return accept_notice or click.confirm("Do you accept this notice?", default=False)

    agent = _agent(state_dir, server)
    try:
        state = agent.enroll(
            ownership=ownership,
            token=token,
            serial_number=serial,
            accept_notice=consent,
            enrollment_secret=enrollment_secret if token is None else None,
        )
    except PermissionError as exc:
        raise click.ClickException(str(exc)) from exc
    except ProtocolError as exc:
        raise click.ClickException(f"enrollment refused: {exc.error}: {exc.reason}") from exc
    finally:
        agent.close()
    console.print(f"[green]enrolled[/] as device [bold]{state.device_id}[/] ({ownership})")


@agent_group.command("checkin")
@state_option
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON (for scripts).")
def checkin_cmd(state_dir: Path, as_json: bool) -> None:
    """Collect posture, check in once and carry out the commands received."""
    agent = _agent(state_dir)
    try:
        render_checkin(Console(), agent.checkin(), as_json=as_json)
    except ProtocolError as exc:
        raise click.ClickException(f"check-in refused: {exc.error}: {exc.reason}") from exc
    except NotEnrolled as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        agent.close()


@agent_group.command("run")
@state_option
@click.option(
    "--max-wait",
    default="60s",
    show_default=True,
    help=f"Longest long-poll, {DURATION_HELP} (the server caps it at 60s).",
)
def run_cmd(state_dir: Path, max_wait: str) -> None:
    """Check in, long-poll for commands, repeat (Ctrl-C stops)."""
    try:
        wait_s = max(1, int(parse_config_duration(max_wait).total_seconds()))  # 60 = 60s
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--max-wait") from exc
    agent = _agent(state_dir)
    stop = threading.Event()
    try:
        agent.run(stop, max_wait_s=wait_s, on_checkin=_print_result)
    except KeyboardInterrupt:
        stop.set()
    except ProtocolError as exc:
        raise click.ClickException(f"refused: {exc.error}: {exc.reason}") from exc
    finally:
        agent.close()


@agent_group.command("serve-loopback")
@state_option
@click.option(
    "--gateway-origin",
    required=True,
    help="The only origin allowed to ask for proofs, e.g. https://gw.example.com",
)
@click.option(
    "--port",
    default=DEFAULT_PORT,
    show_default=True,
    help="Loopback port (0: any); the gateway's oidc.agent_port.",
)
@click.option("--no-posture", is_flag=True, help="Do not attach a posture snapshot.")
def serve_loopback_cmd(state_dir: Path, gateway_origin: str, port: int, no_posture: bool) -> None:
    """Serve login proofs on 127.0.0.1 for the gateway's login page."""
    agent = _agent(state_dir)
    agent.client.close()  # the helper signs locally; it does not talk to the server

    collector = _collector()

    def snapshot() -> dict[str, Any]:
        return {"format": "agent", "report": agent_report(collector())}

    try:
        helper = LoopbackHelper(
            agent.key,
            agent.device_id,
            gateway_origin,
            posture=None if no_posture else snapshot,
            port=port,
        )
    except (ValueError, OSError, NotEnrolled) as exc:
        raise click.ClickException(str(exc)) from exc
    console.print(f"login helper on {helper.url} for origin {gateway_origin} (Ctrl-C stops)")
    try:
        helper.serve_forever()
    except KeyboardInterrupt:
        pass
