"""Issue 7 finding 7: one failed-login limiter for every process, and no lockout by strangers.

Two apps built from the same settings stand for two worker processes (each has its own
core, engine, limiter object): on the embedded default they share the SQLite file, in
production PostgreSQL and Redis. The count they keep is one count. A stranger's wrong
passwords slow the account but never stop alice from her own source; a spraying source is
refused; a failing limiter backend refuses (503), never lets a guess through or answers 500.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text

from posture_gateway.app import create_app
from posture_gateway.oidc.authn import AuthenticationFailed
from posture_gateway.oidc.local_users import LocalUsers
from posture_gateway.oidc.server import EXTENSION_KEY
from posture_gateway.settings import Settings
from tests.conftest import _fresh_postgres_db
from tests.integration.oidc.conftest import ISSUER, PASSWORD, Browser, StubGate, write_files


def _settings(tmp_path: Path, username: str = "alice", **extra: Any) -> Settings:
    clients, users = write_files(tmp_path)
    users.write_text(
        users.read_text(encoding="utf-8").replace("username: alice", f"username: {username}"),
        encoding="utf-8",
    )
    return Settings.model_validate(
        {
            "data_dir": tmp_path / "data",
            "dev_mode": True,
            "public_url": ISSUER,
            "oidc": {
                "clients_file": clients,
                "users_file": users,
                "max_failed_logins": 3,
                "max_failed_logins_per_source": 6,
            },
            **extra,
        }
    )


@pytest.fixture
def alice() -> str:
    """Alice's username, fresh per test: the Redis of a test session is shared between tests
    and an account's counts live there for a window."""
    return f"alice-{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=["sqlite", "postgres+redis"])
def two_apps(
    request: pytest.FixtureRequest, tmp_path: Path, alice: str
) -> Iterator[tuple[Flask, Flask]]:
    if request.param == "sqlite":
        settings = _settings(tmp_path, alice)
    else:
        settings = _settings(
            tmp_path,
            alice,
            database_url=_fresh_postgres_db(request.getfixturevalue("postgres_server_url")),
            redis_url=request.getfixturevalue("redis_url"),
        )
    apps = (create_app(settings), create_app(settings))
    try:
        yield apps
    finally:
        for app in apps:
            app.extensions["posture"].core.close()


def _users(app: Flask) -> LocalUsers:
    users = app.extensions[EXTENSION_KEY].local_users
    assert isinstance(users, LocalUsers)
    return users


def _source() -> str:
    """A fresh address per test: the Redis of the test session is shared between tests."""
    return "10.{}.{}.{}".format(*random.sample(range(1, 255), 3))


def _reason(users: LocalUsers, username: str, password: str, source: str) -> str:
    try:
        users.verify(username, password, client_ip=source)
    except AuthenticationFailed as failed:
        return failed.reason
    return "ok"


def test_two_processes_keep_one_count(two_apps: tuple[Flask, Flask], alice: str) -> None:
    a, b = (_users(app) for app in two_apps)
    source = _source()
    # 3 failures for alice, alternating processes: the account is slowed on both
    assert [_reason(u, alice, "wrong", source) for u in (a, b, a)] == ["invalid_credentials"] * 3
    assert _reason(b, alice, PASSWORD, source) == "rate_limited"
    assert _reason(a, alice, PASSWORD, source) == "rate_limited"
    # the per-source count is shared too: 3 more failures (other names) use up the 6
    name = f"nobody-{uuid.uuid4().hex[:8]}"
    assert [_reason(u, name, "x", source) for u in (b, a, b)] == ["invalid_credentials"] * 3
    assert _reason(a, name, "x", source) == "rate_limited"
    assert _reason(b, name + "2", "x", source) == "rate_limited"


def test_a_strangers_hundred_wrong_passwords_do_not_stop_alice(
    two_apps: tuple[Flask, Flask], alice: str
) -> None:
    a, b = (_users(app) for app in two_apps)
    stranger = _source()
    answers = [_reason((a, b)[i % 2], alice, f"guess-{i}", stranger) for i in range(100)]
    assert answers.count("invalid_credentials") <= 6  # the source is refused after its budget
    assert set(answers) == {"invalid_credentials", "rate_limited"}
    hers = _source()
    assert _reason(a, alice, PASSWORD, hers) == "ok"
    assert _reason(b, alice, PASSWORD, hers) == "ok"


def test_a_botnet_slows_alice_without_locking_her(
    two_apps: tuple[Flask, Flask], alice: str
) -> None:
    a, b = (_users(app) for app in two_apps)
    for i in range(100):  # 100 wrong passwords from 50 addresses
        _reason((a, b)[i % 2], alice, f"guess-{i}", f"{_source()}-{i % 50}")
    assert _reason(b, alice, PASSWORD, _source()) == "ok"


def test_a_spraying_source_is_refused(two_apps: tuple[Flask, Flask], alice: str) -> None:
    a, b = (_users(app) for app in two_apps)
    sprayer = _source()
    names = [f"user{i}-{uuid.uuid4().hex[:6]}" for i in range(6)]  # one guess per account
    assert [_reason((a, b)[i % 2], n, "Winter2026!", sprayer) for i, n in enumerate(names)] == [
        "invalid_credentials"
    ] * 6
    assert _reason(a, alice, PASSWORD, sprayer) == "rate_limited"
    assert _reason(b, "someone-else", "Winter2026!", sprayer) == "rate_limited"
    assert _reason(a, alice, PASSWORD, _source()) == "ok"


# --- over HTTP: the page, the status, Retry-After, and a backend outage ---------------------


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = create_app(_settings(tmp_path))
    app.config["TESTING"] = True
    app.extensions[EXTENSION_KEY].gate = StubGate()
    yield app
    app.extensions["posture"].core.close()


def _browser(app: Flask, source: str) -> Browser:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = source
    browser = Browser(client)
    assert browser.authorize().status_code == 303
    return browser


def test_slowed_login_answers_429_with_retry_after(app: Flask) -> None:
    stranger = _browser(app, "203.0.113.5")
    for _ in range(3):
        assert stranger.login(password="wrong").status_code == 401
    limited = stranger.login()
    assert limited.status_code == 429
    assert 30 <= int(limited.headers["Retry-After"]) <= 300
    alice = _browser(app, "198.51.100.20")
    assert alice.login().status_code == 303  # on to the device check


def test_limiter_backend_down_fails_closed_with_503(app: Flask) -> None:
    browser = _browser(app, "198.51.100.21")
    with app.extensions["posture"].core.database.transaction() as conn:
        conn.execute(text("DROP TABLE rate_limits"))  # the shared limiter's storage is gone
    page = browser.login()
    assert page.status_code == 503
    assert browser.login(password="wrong").status_code == 503  # no guess gets through either


def test_behind_a_proxy_a_stranger_does_not_lock_out_alice(tmp_path: Path) -> None:
    """Every request comes from the proxy's address; the client is in X-Forwarded-For."""
    app = create_app(_settings(tmp_path, trusted_proxy_hops=1))
    app.extensions[EXTENSION_KEY].gate = StubGate()
    try:
        stranger = _browser(app, "10.0.0.2")  # the proxy
        stranger.client.environ_base["HTTP_X_FORWARDED_FOR"] = "203.0.113.66"
        answers = [stranger.login(password=f"guess-{i}").status_code for i in range(100)]
        assert set(answers) == {401, 429}
        alice = _browser(app, "10.0.0.2")
        alice.client.environ_base["HTTP_X_FORWARDED_FOR"] = "198.51.100.30"
        assert alice.login().status_code == 303
    finally:
        app.extensions["posture"].core.close()
