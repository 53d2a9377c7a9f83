"""The ``posture`` command line's frame: a lazy app, one place that turns errors into lines.

:class:`PostureGroup` is the root click group. Unlike Flask's ``FlaskGroup`` it never builds
the app to list commands, so ``posture --help`` and every ``--help`` work with no
configuration and create nothing; it shows none of Flask's own options (``--env-file``,
``--app``, ``--debug``). Commands that need the server's state use Flask's
``with_appcontext``: the app is built from the validated settings only when such a command
runs (:func:`create_app_from_cli`).

Every error the project raises on purpose becomes one line on stderr and an exit code:
2 for a usage or configuration mistake (the line names the key or argument and the fix),
1 for a runtime failure. A traceback is shown only with ``POSTURE_DEBUG=1``.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from flask import Flask
from flask.cli import ScriptInfo

from mdm_core.domain.errors import ConfigurationError, MdmError
from mdm_core.domain.infra_errors import InfraError
from mdm_core.policy.errors import PolicySetUnavailable
from mdm_core.support.durations import parse_config_duration
from posture_gateway.app import create_app
from posture_gateway.oidc.yamlconf import ConfigFileError
from posture_gateway.settings import ConfigError, load_settings
from posture_gateway.signing.key_ring import KeyRingError

__all__ = [
    "PostureGroup",
    "ConfigProblem",
    "RuntimeProblem",
    "create_app_from_cli",
    "config_file_option",
    "translate_error",
    "debug_enabled",
    "DURATION",
    "DurationParam",
]


def debug_enabled() -> bool:
    """``POSTURE_DEBUG=1`` (or true/yes): let unexpected exceptions show their traceback."""
    return os.environ.get("POSTURE_DEBUG", "").strip().lower() in {"1", "true", "yes"}


if TYPE_CHECKING:  # click >= 8.3 types ParamType as a generic; older ones are not subscriptable
    _ParamBase = click.ParamType[timedelta, Any]
else:
    _ParamBase = click.ParamType


class DurationParam(_ParamBase):
    """A CLI duration in the one syntax of config and policies: ``30s``, ``2m``, ``1h``, ``7d``.

    Parsed with the other arguments, so a typo is refused before anything is opened."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:

        if isinstance(value, timedelta):
            return value
        try:
            parsed = parse_config_duration(str(value), bare_seconds=False)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if parsed <= timedelta(0):
            self.fail(f"{value!r}: a duration must be longer than zero", param, ctx)
        return parsed


DURATION = DurationParam()


class ConfigProblem(click.ClickException):
    """A configuration mistake (exit code 2): the message names the key and the fix."""

    exit_code = 2


class RuntimeProblem(click.ClickException):
    """A failure while doing the work (exit code 1)."""

    exit_code = 1


def config_file_option() -> Path | None:
    """The root ``--config`` value (or ``None``), from inside any sub-command."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    value = ctx.find_root().params.get("config")
    return value if isinstance(value, Path) else None


def translate_error(exc: BaseException) -> click.ClickException | None:
    """The one-line CLI error for a project exception, or ``None`` for an unknown one."""

    if isinstance(exc, click.ClickException):
        return exc
    if isinstance(exc, ConfigError | ConfigFileError):
        return ConfigProblem(str(exc))
    if isinstance(exc, ConfigurationError):
        return ConfigProblem(f"configuration: {exc.message}")
    if isinstance(exc, MdmError):
        return RuntimeProblem(f"{exc.reason}: {exc.message}")
    if isinstance(exc, PolicySetUnavailable):
        return RuntimeProblem(f"policy set unavailable: {exc} (every decision blocks)")
    if isinstance(exc, KeyRingError):
        return RuntimeProblem(f"signing keys: {exc}")
    if isinstance(exc, InfraError):
        return RuntimeProblem(f"{exc} (check redis_url and that the server is up)")
    import httpx
    from sqlalchemy.exc import ArgumentError, OperationalError

    if isinstance(exc, httpx.HTTPError):
        where = ""
        try:
            where = f" {exc.request.url}"
        except RuntimeError:  # no request attached
            pass
        return RuntimeProblem(f"cannot reach the server{where}: {exc or type(exc).__name__}")

    if isinstance(exc, ArgumentError):
        return ConfigProblem(f"database_url: {exc} (e.g. postgresql+psycopg://user@host/db)")
    if isinstance(exc, OperationalError):
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        return RuntimeProblem(f"cannot use the database (database_url): {detail}")
    if isinstance(exc, PermissionError | FileNotFoundError | IsADirectoryError):
        where = f" {exc.filename}" if exc.filename else ""
        return RuntimeProblem(f"{exc.strerror or exc}:{where}")
    return None


def create_app_from_cli() -> Flask:
    """Build the app from ``--config``/``POSTURE_CONFIG`` and the environment (validated)."""

    return create_app(load_settings(config_file_option()))


class PostureGroup(click.Group):
    """The root group: an app loaded lazily for the commands that ask for it, clean errors."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        # Flask's ``with_appcontext`` finds the app through this ScriptInfo (built lazily).
        if "obj" not in extra and "obj" not in self.context_settings:
            extra["obj"] = ScriptInfo(
                create_app=create_app_from_cli, set_debug_flag=False, load_dotenv_defaults=False
            )
        return super().make_context(info_name, args, parent=parent, **extra)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and not ctx.resilient_parsing:  # bare ``posture``: the help, exit 0
            click.echo(ctx.get_help(), color=ctx.color)
            ctx.exit(0)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            problem = translate_error(exc)
            if problem is not None and not debug_enabled():
                raise problem from exc
            if debug_enabled():
                raise
            raise RuntimeProblem(
                f"unexpected {type(exc).__name__}: {exc} "
                "(run again with POSTURE_DEBUG=1 for the traceback)"
            ) from exc
