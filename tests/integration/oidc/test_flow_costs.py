"""What one code flow costs the stores, on SQLite AND PostgreSQL (issue 9, the OIDC target).

Counted, not timed (the machine is shared): the authorization request is validated once at
``/oauth/authorize`` and ONCE more when the code is issued (each validation asks the code
store whether the nonce was used; the second ask stays: it is the replay check right before
the code is stored); a request reads its login transaction once; the token exchange spends
the code with one statement and, on PostgreSQL, runs in ONE transaction, so a storage error
in it rolls everything back (no token, the code not spent) while a refused exchange (a
replay) still commits its revocation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from mdm_core.storage.sql.database import Database
from posture_gateway.login.transactions import login_transactions
from posture_gateway.oidc.server import OIDCProvider
from posture_gateway.oidc.tables import oidc_tokens
from posture_gateway.settings import Settings
from tests.integration.oidc.conftest import PASSWORD, Browser, StubGate, form_value


@pytest.fixture
def app(settings: Settings, database: Database) -> Iterator[Flask]:
    """The conftest app on SQLite or PostgreSQL."""
    from posture_gateway.app import create_app

    built = create_app(settings.model_copy(update={"database_url": database.url}))
    built.config["TESTING"] = True
    yield built
    built.extensions["posture"].core.close()


class Counter:
    """Transactions begun and statements run on an engine (this thread only)."""

    def __init__(self, database: Database) -> None:
        self.begins = 0
        self.statements: list[str] = []
        engine = database.engine
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "before_cursor_execute", self._statement)

        self.events: list[str] = []  # "BEGIN" and statements, in order

    def _begin(self, _conn: Any) -> None:
        self.begins += 1
        self.events.append("BEGIN")

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.statements.append(" ".join(statement.split()[:3]))
        self.events.append(self.statements[-1])


def _db(app: Flask) -> Database:
    database: Database = app.extensions["posture"].core.database
    return database


def _count_calls(obj: Any, name: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = getattr(obj, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(obj, name, counted)
    return calls


def test_the_request_is_validated_once_at_authorize_and_once_at_issue(
    app: Flask,
    browser: Browser,
    provider: OIDCProvider,
    gate: StubGate,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nonce_checks = _count_calls(provider.codes, "nonce_seen", monkeypatch)
    assert browser.authorize().status_code == 303
    assert len(nonce_checks) == 1
    assert browser.login().status_code == 303
    response = browser.submit_device()
    assert response.status_code == 302
    assert len(nonce_checks) == 2  # the check right before the code is stored
    assert response.headers["Location"].startswith("https://app.example/cb?code=")
    assert "iss=" in response.headers["Location"]


def test_the_code_is_stored_in_the_transaction_of_its_nonce_check_on_postgres(
    app: Flask, browser: Browser, gate: StubGate
) -> None:
    assert browser.authorize().status_code == 303
    assert browser.login().status_code == 303
    csrf, nonce = browser.device_page()
    counter = Counter(_db(app))
    response = browser.client.post(
        "/login/device", data={"csrf_token": csrf, "nonce": nonce, "proof": "proof-jwt"}
    )
    assert response.status_code == 302
    codes = [e for e in counter.events if e == "BEGIN" or "oidc_codes" in e]
    start = codes.index("SELECT oidc_codes.code_hash FROM")
    between = codes[start:]
    assert between[-1] == "INSERT INTO oidc_codes"
    assert between.count("SELECT oidc_codes.code_hash FROM") == 1
    assert ("BEGIN" in between) is (not _db(app).is_postgres)


def test_the_password_step_reads_its_login_transaction_once(
    app: Flask, browser: Browser, gate: StubGate, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert browser.authorize().status_code == 303
    with app.app_context():
        store = login_transactions()
    page = browser.client.get("/login")
    csrf = form_value(page.get_data(as_text=True), "csrf_token")
    reads = _count_calls(store, "get", monkeypatch)
    writes = _count_calls(store, "put", monkeypatch)
    response = browser.client.post(
        "/login/password", data={"csrf_token": csrf, "username": "alice", "password": PASSWORD}
    )
    assert response.status_code == 303
    # The view and complete_authentication share the one read; the user goes back once.
    assert (len(reads), len(writes)) == (1, 1)


def test_the_token_exchange_is_one_transaction_on_postgres(
    app: Flask, browser: Browser, gate: StubGate
) -> None:
    code = browser.full_login()
    counter = Counter(_db(app))
    response = browser.exchange(code)
    assert response.status_code == 200, response.get_data(as_text=True)
    # The code spent in one statement (UPDATE ... RETURNING), the issuance recorded.
    assert counter.statements == ["UPDATE oidc_codes SET", "INSERT INTO oidc_tokens"]
    assert counter.begins == (1 if _db(app).is_postgres else 2)


def test_a_replayed_code_still_revokes_what_the_first_exchange_issued(
    app: Flask, browser: Browser, gate: StubGate
) -> None:
    code = browser.full_login()
    first = browser.exchange(code)
    assert first.status_code == 200
    again = browser.exchange(code)
    assert again.status_code == 400
    assert again.get_json()["error"] == "invalid_grant"
    with _db(app).engine.connect() as conn:
        reasons = {row.revoked_reason for row in conn.execute(oidc_tokens.select()).all()}
    assert reasons == {"code_reuse"}


def test_a_storage_error_in_the_exchange_issues_nothing(
    app: Flask,
    browser: Browser,
    provider: OIDCProvider,
    gate: StubGate,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code = browser.full_login()

    def broken(_record: Any) -> None:
        raise OperationalError("INSERT", {}, Exception("disk full"))

    with monkeypatch.context() as patch:
        patch.setattr(provider.tokens, "save", broken)
        failed = browser.exchange(code)
    assert failed.status_code == 503
    assert failed.get_json()["error"] == "temporarily_unavailable"
    with _db(app).engine.connect() as conn:
        assert conn.execute(oidc_tokens.select()).all() == []
    retried = browser.exchange(code)
    if _db(app).is_postgres:
        # One transaction: the failed exchange spent nothing; the code yields its one issuance.
        assert retried.status_code == 200, retried.get_data(as_text=True)
    else:
        # SQLite keeps one transaction per step: the code was spent before the failure.
        assert retried.status_code == 400
        assert retried.get_json()["error"] == "invalid_grant"
