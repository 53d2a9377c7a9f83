"""Bad input at the authorization endpoint gets a clear 4xx page, never a 500 (issue 7,
finding 12); the login transaction is kept server side and the cookie holds only its id."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from posture_gateway.login.transactions import EXTENSION_KEY as TX_STORE_KEY
from posture_gateway.oidc.tables import gateway_login_transactions
from tests.integration.oidc.conftest import Browser, StubGate


def _rows(app: Flask) -> int:
    engine = app.extensions["posture"].core.database.engine
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(gateway_login_transactions))
        return int(count.scalar_one())


def _error_code(response: Any) -> str:
    html = response.get_data(as_text=True)
    marker = 'data-error="'
    assert marker in html, html[:400]
    return html.split(marker, 1)[1].split('"', 1)[0]


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://rp.example\\@evil.example/cb",
        "https://rp.example/cb\\..\\x",
        "http://[::1",  # unparseable host
    ],
)
def test_malformed_redirect_uri_is_a_page_not_a_500(
    app: Flask, browser: Browser, redirect_uri: str
) -> None:
    response = browser.authorize(redirect_uri=redirect_uri)
    assert response.status_code == 400
    assert "Location" not in response.headers  # never redirected to what we cannot trust
    assert _error_code(response) in {"invalid_request", "invalid_client", "invalid_grant"}
    assert _rows(app) == 0  # nothing started


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("state", "s" * 60_000),
        ("nonce", "n" * 5_000),
        ("login_hint", "a" * 1_000),
        ("unknown_extension", "x" * 5_000),
        ("state", "line\nbreak"),
        ("state", "nul\x00byte"),
    ],
)
def test_oversized_or_control_parameters_are_refused(
    app: Flask, browser: Browser, name: str, value: str
) -> None:
    response = browser.authorize(**{name: value})
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert _error_code(response) == "invalid_request"
    assert len(response.headers.get("Set-Cookie", "")) < 400
    assert _rows(app) == 0


def test_too_many_parameters_are_refused(app: Flask, browser: Browser) -> None:
    extra = {f"x{i}": "1" for i in range(40)}
    response = browser.client.get(
        "/oauth/authorize?" + urlencode({**browser.authorize_params(), **extra})
    )
    assert response.status_code == 400 and _error_code(response) == "invalid_request"


def test_the_cookie_holds_only_the_transaction_id(
    app: Flask, browser: Browser, gate: StubGate
) -> None:
    state = "S" * 1024  # the longest accepted state
    response = browser.authorize(state=state)
    assert response.status_code == 303
    cookie = browser.client.get_cookie("session")
    assert cookie is not None
    assert len(cookie.value) < 200, len(cookie.value)
    assert _rows(app) == 1  # the transaction is in the shared store
    # The login continues from the store, and the state comes back intact.
    browser.state = state
    assert browser.login().status_code == 303
    code = browser.code_from(browser.submit_device())
    assert code
    assert _rows(app) == 0  # ended with the code: single use


def test_a_stale_cookie_cannot_resume_a_finished_login(
    app: Flask, browser: Browser, gate: StubGate
) -> None:
    assert browser.authorize().status_code == 303
    saved = browser.client.get_cookie("session")
    assert saved is not None
    assert browser.login().status_code == 303
    browser.code_from(browser.submit_device())
    browser.client.set_cookie("session", saved.value, domain="localhost")
    again = browser.client.get("/login")
    assert _error_code(again) == "login_expired"


def test_authorize_answers_503_when_the_store_is_down(
    app: Flask, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = app.extensions[TX_STORE_KEY]

    def down(*_: Any, **__: Any) -> Any:
        raise OperationalError("INSERT", {}, Exception("connection refused"))

    monkeypatch.setattr(store, "create", down)
    response = browser.authorize()
    assert response.status_code == 503
    assert _error_code(response) == "temporarily_unavailable"
