"""``posture serve`` and ``posture db``: run the server, manage the schema.

``serve`` replaces this process with a production WSGI server (gunicorn or granian) running
``posture_gateway.app:create_app()``; configuration comes from the same file/environment
layers, validated first so a bad setting fails here with its key named. ``db migrate``
applies the Alembic migrations (the server also migrates at start).

The workers build their app from the environment they inherit, so ``serve`` hands them the
configuration it validated: the config file (``--config`` or ``POSTURE_CONFIG``) as an
absolute ``POSTURE_CONFIG``, and every ``POSTURE_*`` variable as it is. The app it built
to validate has already generated what the workers share (data directory, session key, CA,
signing keys), so they start on the same secrets.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import click
from flask.cli import with_appcontext

from posture_gateway.observability.logs import LOG_FORMAT_ENV, LOG_FORMATS
from posture_gateway.observability.metrics import (
    LIVE_CREDENTIALS_DB_ENV,
    LIVE_CREDENTIALS_POLICY_DIR_ENV,
    prepare_multiprocess_dir,
)
from posture_gateway.state import state

__all__ = ["serve_cmd", "db_group", "prepare_observability", "worker_environment"]

APP_FACTORY = "posture_gateway.app:create_app()"


def _argv(server: str, host: str, port: int, workers: int, threads: int) -> list[str]:
    if server == "granian":
        return [
            sys.executable, "-m", "granian", "--interface", "wsgi",
            "--host", host, "--port", str(port), "--workers", str(workers),
            "--blocking-threads", str(threads), "--factory", "posture_gateway.app:create_app",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}",
        "--workers", str(workers), "--worker-class", "gthread", "--threads", str(threads),
        APP_FACTORY,
    ]  # fmt: skip


def worker_environment(config_file: Path | None, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment the server's workers start with: ``environ`` (``POSTURE_*`` included)
    with the config file, when one is given, as an absolute ``POSTURE_CONFIG``."""
    env = dict(environ)
    if config_file is None and env.get("POSTURE_CONFIG"):
        config_file = Path(env["POSTURE_CONFIG"])
    if config_file is not None:
        env["POSTURE_CONFIG"] = str(config_file.resolve())
    env["POSTURE_SERVE_WORKER"] = "1"  # background jobs (the LDAP schedule) start in workers
    return env


def _config_file() -> Path | None:
    """The ``--config`` given to the ``posture`` group (``POSTURE_CONFIG`` fills it too)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    value = ctx.find_root().params.get("config")
    return Path(value) if value else None


def prepare_observability(log_format: str | None) -> subprocess.Popen[bytes] | None:
    """Before the workers start: their log format (environment), an empty multi-process
    metrics directory in the data dir, and the separate metrics listener when configured
    (a child process that exits with the server). Returns that child, if any."""

    settings = state().settings
    os.environ[LOG_FORMAT_ENV] = log_format or settings.log_format or "text"
    metrics = settings.metrics
    if not metrics.enabled:
        return None
    prepare_multiprocess_dir(settings.data_dir)
    if not metrics.listen:
        return None
    argv = [
        sys.executable,
        "-m",
        "posture_gateway.observability.metrics_server",
        metrics.listen,
        str(os.getpid()),  # the server replaces this process, keeping the pid
    ]
    click.echo(f"metrics on http://{metrics.listen}/metrics")
    # The live-credentials gauge reads the database: its URL (maybe with a password) goes
    # through the child's environment, never its command line.
    env = {
        **os.environ,
        LIVE_CREDENTIALS_DB_ENV: settings.effective_database_url,
        LIVE_CREDENTIALS_POLICY_DIR_ENV: str(settings.policy_dir),
    }
    return subprocess.Popen(argv, env=env)  # noqa: S603 - fixed argv: this interpreter + our module


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--server", type=click.Choice(["gunicorn", "granian"]), default="granian", show_default=True
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default=None,
    help="text (default) or json lines; overrides the log_format setting.",
)
@with_appcontext
def serve_cmd(
    host: str, port: int, workers: int, threads: int, server: str, log_format: str | None
) -> None:
    """Run the gateway under a production WSGI server (config validated first)."""
    if shutil.which(sys.executable) is None:  # pragma: no cover - defensive
        raise click.ClickException("cannot find the Python interpreter")
    _check_long_polls(threads)
    prepare_observability(log_format)
    argv = _argv(server, host, port, workers, threads)
    env = worker_environment(_config_file(), os.environ)
    plural = "worker" if workers == 1 else "workers"
    click.echo(f"serving on http://{host}:{port} with {server} ({workers} {plural})")
    os.execve(sys.executable, argv, env)  # noqa: S606 - fixed argv: this interpreter + the server


def _check_long_polls(threads: int) -> None:
    """Device long-polls each hold a request thread: at most half the threads may wait, so
    logins and check-ins always find a free one (docs/decisions.md)."""

    waits = state().settings.long_poll.max_waits
    if 2 * waits > threads:
        raise click.ClickException(
            f"long_poll.max_waits={waits} would let device long-polls hold more than half of "
            f"the {threads} request threads per worker: raise --threads to at least "
            f"{2 * waits} or lower long_poll.max_waits (POSTURE_LONG_POLL__MAX_WAITS)"
        )


@click.group("db")
def db_group() -> None:
    """The database schema."""


@db_group.command("migrate")
@with_appcontext
def migrate_cmd() -> None:
    """Apply every pending Alembic migration (idempotent)."""

    db = state().core.database
    db.migrate()
    click.echo(f"schema up to date ({db.dialect})")
