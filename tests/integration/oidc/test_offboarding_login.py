# ruff: noqa: F811 - the fixtures imported from test_refresh_revocation are parameters here
"""Offboarding ends a real login's access at once (SQLite and PostgreSQL): refresh refused,
tokens inactive, userinfo refused; a new login is refused; a sync that re-activates the
account changes none of it; an admin's reinstate lets a new login in again."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from flask import Flask

from mdm_core.storage.directory import DirectoryUser
from mdm_core.storage.sql.database import Database
from tests.integration.oidc.test_refresh_revocation import (  # noqa: F401 - fixtures
    USER,
    Session,
    _core,
    _decisions,
    app,
    ios,
)


def _offboard(app: Flask) -> None:
    core = _core(app)
    with core.storage.unit_of_work() as uow:
        core.offboarding.request(
            uow, user_id=USER, trigger="hr:generic", source_ref="term-1", effective_at=None,
            actor="hr:generic",
        )  # fmt: skip


def test_offboarding_ends_the_login_and_refuses_new_ones(
    ios: Session, app: Flask, database: Database
) -> None:
    assert ios.introspect(ios.tokens["refresh_token"], "refresh_token")["active"]
    _offboard(app)
    ios.assert_all_dead()
    assert ios.revoked_reasons() == {"user_offboarded"}
    # A sync says the account is active again: still no way in.
    _core(app).directory.upsert_user(
        DirectoryUser(
            id=USER, username="alice", active=True, source="local", updated_at=datetime.now(UTC)
        )
    )
    with pytest.raises(AssertionError):  # the login flow stops before any code is issued
        ios.login()
    last = _decisions(app, ios.device_id, "oidc")[0]
    assert last.outcome == "block", last
    assert _core(app).directory.user_context(USER).active is False  # type: ignore[union-attr]
    _core(app).offboarding.reinstate(USER, actor="admin:ada", reason="rehired")
    ios.login()  # a new login works again
    assert ios.introspect(ios.tokens["access_token"])["active"]
