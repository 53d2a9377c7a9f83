"""The per-request shortcuts change no answer: the cookie session, the log timestamp, the
baseline security headers and the access line are what Flask's and the slower code gave."""

from __future__ import annotations

import io
import json
import logging
import random
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from flask import Flask, Response, jsonify, session
from flask.sessions import SecureCookieSessionInterface
from flask.testing import FlaskClient
from itsdangerous import TimestampSigner

from posture_gateway.cookie_session import CachedCookieSessionInterface, install
from posture_gateway.observability.logs import configure_logging, timestamp
from posture_gateway.observability.requests import init_app as init_request_log
from posture_gateway.oidc.web import BASELINE_HEADERS, baseline_headers


def _app(interface: SecureCookieSessionInterface | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k" * 32, SESSION_COOKIE_SAMESITE="Lax")
    if interface is not None:
        app.session_interface = interface
    else:
        install(app)

    @app.get("/set")
    def set_() -> str:
        session["x"] = "1"
        return "set"

    @app.get("/read")
    def read() -> str:
        return str(session.get("x"))

    @app.get("/clear")
    def clear() -> str:
        session.clear()
        return "cleared"

    @app.get("/none")
    def none() -> str:
        return "none"

    return app


def _answers(app: Flask) -> list[tuple[int, str, list[str], str | None]]:
    client = app.test_client()
    out = []
    for path in ("/none", "/read", "/set", "/read", "/none", "/clear", "/read", "/none"):
        res = client.get(path)
        out.append(
            (res.status_code, res.get_data(as_text=True), res.headers.getlist("Set-Cookie"),
             res.headers.get("Vary"))
        )  # fmt: skip
    return out


def test_cached_cookie_session_answers_exactly_as_flasks(monkeypatch: pytest.MonkeyPatch) -> None:
    # The cookie carries the second it was signed in: both runs sign at the same second, or
    # a run that straddles a second boundary differs in the timestamp alone.
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: 1_800_000_000)
    assert isinstance(_app().session_interface, CachedCookieSessionInterface)
    assert _answers(_app()) == _answers(_app(SecureCookieSessionInterface()))


def _cookie(client: FlaskClient) -> str:
    return str(client.get("/set").headers["Set-Cookie"].split(";")[0].split("=", 1)[1])


def _read(client: FlaskClient, cookie: str) -> str:
    client.set_cookie("session", cookie)
    return client.get("/read").get_data(as_text=True)


def test_cookie_of_one_interface_is_read_by_the_other() -> None:
    ours, flasks = _app().test_client(), _app(SecureCookieSessionInterface()).test_client()
    assert _read(flasks, _cookie(ours)) == "1"
    assert _read(ours, _cookie(flasks)) == "1"


def test_a_forged_or_old_key_cookie_is_an_empty_session() -> None:
    app = _app()
    client = app.test_client()
    cookie = _cookie(client)
    assert _read(app.test_client(), cookie) == "1"
    assert _read(app.test_client(), cookie[:-2] + "xx") == "None"
    app.config["SECRET_KEY"] = "n" * 32  # rotated: the cached serializer follows the key
    assert _read(app.test_client(), cookie) == "None"
    app.config["SECRET_KEY_FALLBACKS"] = ["k" * 32]  # the old key as a fallback reads it again
    assert _read(app.test_client(), cookie) == "1"


def test_timestamp_writes_what_datetime_isoformat_writes() -> None:
    rng = random.Random(7)
    for i in range(50_000):
        created = rng.uniform(0, 4e9) if i % 2 else 1_764_600_000 + rng.random() * 5
        if i % 5 == 0:  # the rounding edges of milliseconds and seconds
            created = round(created, 3) + rng.choice([0.0005, 0.0009995, 0.9999996, 0.0])
        expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
        assert timestamp(created) == expected, created


def _headers_by_setdefault(response: Response) -> list[tuple[str, str]]:
    for name, value in BASELINE_HEADERS.items():
        response.headers.setdefault(name, value)
    if response.mimetype == "text/html":
        response.headers.setdefault(
            "Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
        )
    return list(response.headers.items())


@pytest.mark.parametrize(
    ("mimetype", "preset"),
    [
        ("application/json", {}),
        ("text/html", {}),
        ("text/html", {"content-security-policy": "default-src 'self'"}),
        ("text/plain", {"X-FRAME-OPTIONS": "SAMEORIGIN", "Referrer-Policy": "origin"}),
        ("application/json", {"x-content-type-options": "nosniff"}),
    ],
)
def test_baseline_headers_are_a_setdefault_per_header(
    mimetype: str, preset: dict[str, str]
) -> None:
    def response() -> Response:
        r = Response("x", mimetype=mimetype)
        for name, value in preset.items():
            r.headers[name] = value
        return r

    assert list(baseline_headers(response()).headers.items()) == _headers_by_setdefault(response())


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging("json", stream=stream)
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)


def test_access_line_has_every_field_and_the_request_id(json_log: io.StringIO) -> None:
    app = Flask(__name__)
    init_request_log(app)

    @app.get("/ok")
    def ok() -> Response:
        logging.getLogger("posture.test").info("inside")
        return jsonify(status="ok")

    res = app.test_client().get(
        "/ok?code=secret",
        headers={"X-Request-ID": "rid-1"},
        environ_base={"REMOTE_ADDR": "10.9.8.7"},
    )
    assert res.headers["X-Request-ID"] == "rid-1"
    lines = [json.loads(x) for x in json_log.getvalue().splitlines()]
    inside = next(x for x in lines if x["logger"] == "posture.test")
    access = next(x for x in lines if x["logger"] == "posture.access")
    assert inside["request_id"] == access["request_id"] == "rid-1"
    assert access["msg"] == "GET /ok 200"
    assert {k: access[k] for k in ("event", "method", "path", "status", "bytes", "remote")} == {
        "event": "request",
        "method": "GET",
        "path": "/ok",
        "status": 200,
        "bytes": len(res.get_data()),
        "remote": "10.9.8.7",
    }
    assert isinstance(access["latency_ms"], float) and access["latency_ms"] >= 0
    assert "secret" not in json_log.getvalue()
