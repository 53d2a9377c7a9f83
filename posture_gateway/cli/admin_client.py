"""The admin API's HTTP client for CLI commands that act as a named admin.

``posture device ...`` and ``posture offboard ...`` talk to a running server over HTTP with
the admin's own token, so what they may do is decided (and audited) by the server, never by
the CLI. :func:`admin_client_options` adds ``--server`` (``POSTURE_ADMIN_URL``, default the
default ``posture serve`` bind) and ``--token`` (``POSTURE_ADMIN_TOKEN``) to a command, as
``server`` and ``token`` arguments; :class:`AdminClient` makes the calls and turns an error
answer into a one-line :class:`click.ClickException` (``"<status> <error>: <reason>"``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
import httpx

__all__ = ["DEFAULT_SERVER", "admin_client_options", "AdminClient"]

DEFAULT_SERVER = "http://127.0.0.1:8000"
_F = TypeVar("_F", bound=Callable[..., Any])


def admin_client_options(command: _F) -> _F:
    """Add ``--server`` and ``--token`` (keyword arguments ``server``, ``token``)."""
    command = click.option(
        "--token",
        envvar="POSTURE_ADMIN_TOKEN",
        required=True,
        help="Your admin API token (from `posture admin add`; env POSTURE_ADMIN_TOKEN).",
    )(command)
    command = click.option(
        "--server",
        envvar="POSTURE_ADMIN_URL",
        default=DEFAULT_SERVER,
        show_default=True,
        help="The gateway's base URL (env POSTURE_ADMIN_URL).",
    )(command)
    return command


class AdminClient:
    """GET and POST JSON to ``<server>/admin/api...`` as the admin owning ``token``."""

    def __init__(self, server: str, token: str, *, timeout: float = 30.0) -> None:
        if not token.strip():
            raise click.UsageError("an admin token is required (--token or POSTURE_ADMIN_TOKEN)")
        self.server = server.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token.strip()}", "Accept": "application/json"}
        self._timeout = timeout

    def __repr__(self) -> str:  # the token stays out of tracebacks
        return f"AdminClient(server={self.server!r})"

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        query = {k: v for k, v in params.items() if v is not None}
        return self._call("GET", path, params=query)

    def post(self, path: str, json: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._call("POST", path, json=json if json is not None else {})

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        url = self.server + path
        with httpx.Client(timeout=self._timeout, headers=self._headers) as client:
            response = client.request(method, url, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_error:
            if isinstance(body, dict) and "error" in body:
                error, reason = body.get("error"), body.get("reason", "")
            else:
                error, reason = "http_error", response.text.strip()[:200] or response.reason_phrase
            raise click.ClickException(f"{response.status_code} {error}: {reason}")
        if not isinstance(body, dict):
            raise click.ClickException(f"{response.status_code} bad_answer: not a JSON object")
        return body
