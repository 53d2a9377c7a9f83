"""The ``posture`` command line: a click group on Flask's ``FlaskGroup``.

Every command runs inside an app context built by :func:`posture_gateway.app.create_app`
from the validated settings. Sub-command groups live in their own modules and are added here.
"""

from __future__ import annotations

from pathlib import Path

import click
from flask import Flask
from flask.cli import FlaskGroup

from posture_gateway.observability.logs import LOG_FORMATS, log_format_option_callback
from posture_gateway.settings import ConfigError, load_settings

__all__ = ["cli", "main"]


def _create_app_from_env() -> Flask:
    from posture_gateway.app import create_app

    ctx = click.get_current_context(silent=True)
    config_file: Path | None = None
    if ctx is not None:
        root = ctx.find_root()
        config_file = root.params.get("config")
    try:
        return create_app(load_settings(config_file))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group(
    cls=FlaskGroup,
    create_app=_create_app_from_env,
    add_default_commands=False,
    add_version_option=False,
    load_dotenv=False,
    set_debug_flag=False,
)
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
from posture_gateway.cli_enroll import enroll_group  # noqa: E402

cli.add_command(enroll_group)  # posture enroll token|register-serial|revoke
from posture_gateway.cli_agent import agent_group  # noqa: E402
from posture_gateway.cli_simulate import simulate_cmd  # noqa: E402
from posture_gateway.demo import demo_cmd  # noqa: E402

cli.add_command(agent_group)  # posture agent enroll|checkin|run|serve-loopback|posture
cli.add_command(simulate_cmd)  # posture simulate --devices N
cli.add_command(demo_cmd)  # posture demo
from posture_gateway.cli_keys import keys_group  # noqa: E402
from posture_gateway.cli_users import clients_group, users_group  # noqa: E402

cli.add_command(keys_group)  # posture keys list|rotate
cli.add_command(users_group)  # posture users hash-password
cli.add_command(clients_group)  # posture clients new-secret
from posture_gateway.cli_policy import policy_group  # noqa: E402

cli.add_command(policy_group)  # posture policy check|what-if


def main() -> None:
    cli(prog_name="posture")


from posture_gateway.cli_serve import db_group, serve_cmd  # noqa: E402

cli.add_command(serve_cmd)  # posture serve [--server granian|gunicorn]
cli.add_command(db_group)  # posture db migrate


if __name__ == "__main__":
    main()
