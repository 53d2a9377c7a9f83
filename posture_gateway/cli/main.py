"""The ``posture`` command line: the root click group and its sub-commands.

Commands that need the server's state run inside an app context built lazily by
:func:`posture_gateway.app.create_app` from the validated settings (see
:mod:`posture_gateway.cli.base`: ``--help`` never builds it, errors are one line).
Sub-command groups live in their own modules and are added here.
"""

from __future__ import annotations

from pathlib import Path

import click

from posture_gateway.cli.base import PostureGroup
from posture_gateway.observability.logs import LOG_FORMATS, log_format_option_callback

__all__ = ["cli", "main"]


@click.group(cls=PostureGroup, context_settings={"max_content_width": 100})
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="POSTURE_CONFIG",
    help="YAML config file (POSTURE_* environment variables override it).",
    is_eager=True,
    expose_value=True,
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default=None,
    expose_value=False,
    callback=log_format_option_callback,
    help="Log lines as text (default) or JSON objects (also for `posture serve`).",
)
def cli(config: Path | None) -> None:
    """Posture Gateway: MDM core, zero-tolerance access gateway and admin tools."""


# Sub-command groups register below (one line each).
from posture_gateway.cli.enroll import enroll_group  # noqa: E402

cli.add_command(enroll_group)  # posture enroll token|register-serial|revoke|release
from posture_gateway.cli.agent import agent_group  # noqa: E402
from posture_gateway.cli.simulate import simulate_cmd  # noqa: E402
from posture_gateway.demo.story import demo_cmd  # noqa: E402

cli.add_command(agent_group)  # posture agent enroll|checkin|run|serve-loopback|posture
cli.add_command(simulate_cmd)  # posture simulate --devices N
cli.add_command(demo_cmd)  # posture demo
from posture_gateway.cli.keys import keys_group  # noqa: E402
from posture_gateway.cli.users import clients_group, users_group  # noqa: E402

cli.add_command(keys_group)  # posture keys list|rotate
cli.add_command(users_group)  # posture users hash-password
from posture_gateway.cli.identity import register as register_identity_cli  # noqa: E402

register_identity_cli(users_group)  # posture users link|unlink|links (external identities)
cli.add_command(clients_group)  # posture clients new-secret
from posture_gateway.cli.policy import policy_group  # noqa: E402

cli.add_command(policy_group)  # posture policy check|what-if
from posture_gateway.cli.converge import converge_cmd  # noqa: E402

policy_group.add_command(converge_cmd)  # posture policy converge [--user|--device] [--dry-run]
from posture_gateway.cli.directory import directory_group  # noqa: E402
from posture_gateway.cli.init import init_cmd  # noqa: E402

cli.add_command(directory_group)  # posture directory list|show|import
from posture_gateway.cli.sync import sync_group  # noqa: E402

cli.add_command(sync_group)  # posture sync ldap [--full]
cli.add_command(init_cmd)  # posture init DIR
from posture_gateway.cli.try_login import try_login_cmd  # noqa: E402

cli.add_command(try_login_cmd)  # posture try-login (a local relying party)
from posture_gateway.cli.sessions import sessions_group  # noqa: E402

cli.add_command(sessions_group)  # posture sessions list|revoke

from posture_gateway.cli.signals import signals_group  # noqa: E402

cli.add_command(signals_group)  # posture signals streams|retry
from posture_gateway.cli.admins import admin_group  # noqa: E402

cli.add_command(admin_group)  # posture admin add|list|disable|rotate
from posture_gateway.cli.offboard import offboard_group  # noqa: E402

cli.add_command(offboard_group)  # posture offboard start|status|cancel|reinstate

from posture_gateway.cli.devices import device_group  # noqa: E402

cli.add_command(device_group)  # posture device list|show|commands|lock|wipe|retire|...


def main() -> None:
    cli(prog_name="posture")  # errors: one line, exit 2 (usage/config) or 1 (cli_base)


from posture_gateway.cli.serve import db_group, serve_cmd  # noqa: E402

cli.add_command(serve_cmd)  # posture serve [--server granian|gunicorn]
cli.add_command(db_group)  # posture db migrate


if __name__ == "__main__":
    main()
