"""``posture serve`` and ``posture db``: run the server, manage the schema.

``serve`` replaces this process with a production WSGI server (gunicorn or granian) running
``posture_gateway.app:create_app()``; configuration comes from the same file/environment
layers, validated first so a bad setting fails here with its key named. ``db migrate``
applies the Alembic migrations (the server also migrates at start).
"""

from __future__ import annotations

import os
import shutil
import sys

import click
from flask.cli import with_appcontext

__all__ = ["serve_cmd", "db_group"]

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


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--server", type=click.Choice(["gunicorn", "granian"]), default="granian", show_default=True
)
@with_appcontext
def serve_cmd(host: str, port: int, workers: int, threads: int, server: str) -> None:
    """Run the gateway under a production WSGI server (config validated first)."""
    if shutil.which(sys.executable) is None:  # pragma: no cover - defensive
        raise click.ClickException("cannot find the Python interpreter")
    argv = _argv(server, host, port, workers, threads)
    plural = "worker" if workers == 1 else "workers"
    click.echo(f"serving on http://{host}:{port} with {server} ({workers} {plural})")
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
