"""``posture serve`` and ``posture db``: run the server, manage the schema.

``serve`` replaces this process with a production WSGI server (gunicorn or granian) running
``posture_gateway.app:create_app()``; configuration comes from the same file/environment
layers, validated first so a bad setting fails here with its key named. ``db migrate``
applies the Alembic migrations (the server also migrates at start).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import click
from flask.cli import with_appcontext

from posture_gateway.observability.logs import LOG_FORMAT_ENV, LOG_FORMATS

__all__ = ["serve_cmd", "db_group", "prepare_observability"]

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


def prepare_observability(log_format: str | None) -> subprocess.Popen[bytes] | None:
    """Before the workers start: their log format (environment), an empty multi-process
    metrics directory in the data dir, and the separate metrics listener when configured
    (a child process that exits with the server). Returns that child, if any."""
    from posture_gateway.app import state
    from posture_gateway.observability.metrics import prepare_multiprocess_dir

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
    return subprocess.Popen(argv)  # noqa: S603 - fixed argv: this interpreter + our module


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64))
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
    prepare_observability(log_format)
    argv = _argv(server, host, port, workers, threads)
    click.echo(f"serving on http://{host}:{port} with {server} ({workers} workers)")
    os.execv(sys.executable, argv)  # noqa: S606 - fixed argv: this interpreter + the server


@click.group("db")
def db_group() -> None:
    """The database schema."""


@db_group.command("migrate")
@with_appcontext
def migrate_cmd() -> None:
    """Apply every pending Alembic migration (idempotent)."""
    from posture_gateway.app import state

    db = state().core.database
    db.migrate()
    click.echo(f"schema up to date ({db.dialect})")
