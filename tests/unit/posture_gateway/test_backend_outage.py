"""Which failures are a backend outage (answered 503) rather than a refusal (401/403)."""

from __future__ import annotations

import sqlite3

import psycopg
from sqlalchemy.exc import OperationalError

from mdm_core.domain.infra_errors import InfraUnavailable
from posture_gateway.access.backends import is_backend_outage
from posture_gateway.oidc.tokens import TokenRejected


def _raised_from(cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as outer:
        return outer


def test_store_and_backend_errors_are_outages_even_when_wrapped() -> None:
    for exc in (
        OperationalError("SELECT 1", {}, Exception("gone")),
        psycopg.OperationalError("server closed the connection"),
        sqlite3.OperationalError("database is locked"),
        InfraUnavailable("redis", "GET", "ConnectionError"),
    ):
        assert is_backend_outage(exc), exc
        assert is_backend_outage(_raised_from(exc)), exc


def test_refusals_are_not_outages() -> None:
    for exc in (TokenRejected("revoked"), ValueError("bad token"), KeyError("kid")):
        assert not is_backend_outage(exc), exc
        assert not is_backend_outage(_raised_from(exc)), exc
