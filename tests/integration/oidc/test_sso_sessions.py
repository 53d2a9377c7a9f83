# ruff: noqa: F811 - the fixtures imported from test_refresh_revocation are parameters here
"""The gateway SSO session through the real login flow (real gate, real check-ins), on
SQLite and PostgreSQL: a second application inside the session needs no password but a new
device proof of the SAME device; prompt / max_age; sid in ID tokens; logout; and the session
dies (with its tokens) on every degrading event, in the event's own transaction.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from flask import Flask
from sqlalchemy import select

from mdm_core.access.decision import Decision, Reason
from mdm_core.bus.events import EventType
from mdm_core.posture.model import Ownership, Platform
from mdm_core.simulator.reports import DeviceTraits
from mdm_core.storage.sql.tables import outbox
from posture_gateway.oidc.server import OIDCProvider
from posture_gateway.oidc.tables import gateway_sso_sessions, oidc_tokens
from posture_gateway.sso.store import Session as SsoSession
from tests.helpers.enrolled import enroll_device
from tests.integration.oidc.conftest import LOGOUT, PUBLIC_REDIRECT, Browser, basic, form_value
from tests.integration.oidc.test_refresh_revocation import (  # noqa: F401 - fixtures
    USER,
    Session,
    _claims,
    _core,
    app,
    ios,
)

COOKIE = "posture_sso"


def _app_b(session: Session) -> Browser:
    """A second relying party in the SAME browser (same cookie jar)."""
    return Browser(
        session.browser.client, client_id="pub", redirect_uri=PUBLIC_REDIRECT, scope="openid email"
    )


def _prove(browser: Browser, session: Session, device: Any = None) -> Any:
    csrf, nonce = browser.device_page()
    proof = (device or session.device).login_proof(
        audience=session.provider.issuer.issuer, nonce=nonce
    )
    response = browser.client.post(
        "/login/device", data={"csrf_token": csrf, "nonce": nonce, "proof": proof}
    )
    if response.status_code == 200 and "/login/continue" in response.get_data(as_text=True):
        page = response.get_data(as_text=True)
        response = browser.client.post(
            "/login/continue",
            data={
                "csrf_token": form_value(page, "csrf_token"),
                "ticket": form_value(page, "ticket"),
            },
        )
    return response


def _sessions(app: Flask) -> list[SsoSession]:
    provider = app.extensions["posture_oidc"]
    assert provider.sessions is not None
    return list(provider.sessions.list(user_id=USER))


def _live(app: Flask) -> list[SsoSession]:
    with _core(app).database.engine.connect() as conn:
        rows = conn.execute(
            select(gateway_sso_sessions.c.public_id).where(
                gateway_sso_sessions.c.revoked_at.is_(None)
            )
        ).all()
    live = {r.public_id for r in rows}
    return [s for s in _sessions(app) if s.public_id in live]


def _access_revoked(app: Flask) -> list[dict[str, Any]]:
    """Every ``access.revoked`` in the outbox, published or not (the relay runs in-process)."""
    with _core(app).database.engine.connect() as conn:
        rows = conn.execute(
            select(outbox.c.payload)
            .where(outbox.c.type == EventType.ACCESS_REVOKED)
            .order_by(outbox.c.id)
        ).all()
    return [dict(r.payload) for r in rows]


def _cookie(session: Session) -> str | None:
    cookie = session.browser.client.get_cookie(COOKIE)
    return cookie.value if cookie is not None else None


def test_login_creates_a_device_bound_session_with_a_separate_strict_cookie(
    ios: Session, app: Flask
) -> None:
    claims = _claims(ios.tokens["id_token"])
    (created,) = _sessions(app)
    assert created.device_id == ios.device_id and created.user_id == USER
    assert claims["sid"] == created.public_id
    assert created.live(created.created_at)
    value = _cookie(ios)
    assert value is not None and value != created.public_id  # the sid is not the cookie
    with _core(app).database.engine.connect() as conn:
        linked = conn.execute(select(oidc_tokens.c.session_id)).scalars().all()
    assert linked == [created.public_id]


def test_cookie_flags(app: Flask, provider: OIDCProvider) -> None:
    session = Session(app, provider, Platform.IOS)
    session.check_in(DeviceTraits())
    b = session.browser
    assert b.authorize().status_code == 303 and b.login().status_code == 303
    response = _prove(b, session)
    assert response.status_code == 302
    header = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith(COOKIE + "="))
    flags = {part.strip().split("=")[0].lower() for part in header.split(";")}
    assert {"httponly", "path", "max-age"} <= flags
    assert "samesite=lax" in header.lower()
    assert "secure" not in flags  # http issuer in this test; https gets Secure


def test_second_application_needs_no_password_but_a_new_proof_of_the_same_device(
    ios: Session, app: Flask
) -> None:
    b = _app_b(ios)
    started = b.authorize()
    assert started.status_code == 303
    assert started.headers["Location"].endswith("/login/device")  # no password page
    decisions_before = len(_decisions(app, ios.device_id))
    code = b.code_from(_prove(b, ios))
    assert len(_decisions(app, ios.device_id)) == decisions_before + 1  # re-checked
    tokens = b.exchange(code).get_json()
    claims = _claims(tokens["id_token"])
    (only,) = _sessions(app)  # no second session
    assert claims["sid"] == only.public_id and claims["aud"] == "pub"
    assert claims["device_id"] == ios.device_id
    assert claims["auth_time"] == _claims(ios.tokens["id_token"])["auth_time"]


def _decisions(app: Flask, device_id: str) -> list[Any]:
    with _core(app).storage.unit_of_work() as uow:
        return [e for e in uow.audit.recent(device_id, limit=200) if e.action == "access.decision"]


def test_a_proof_without_the_device_gets_no_code_in_the_session(ios: Session) -> None:
    b = _app_b(ios)
    assert b.authorize().status_code == 303
    csrf, nonce = b.device_page()
    refused = b.client.post("/login/device", data={"csrf_token": csrf, "nonce": nonce, "proof": ""})
    assert refused.status_code == 403  # block page: the session is not a device proof


def test_another_device_in_the_session_asks_for_credentials_again(ios: Session, app: Flask) -> None:
    other = enroll_device(_core(app), USER, ownership=Ownership.CORPORATE, platform=Platform.IOS)
    b = _app_b(ios)
    assert b.authorize().status_code == 303
    response = _prove(b, ios, other)
    assert response.status_code == 401
    assert "not the one you signed in on" in response.get_data(as_text=True)
    assert b.client.get("/login/device").status_code == 400  # the session's user is gone


def test_prompt_login_and_max_age_ask_for_credentials(ios: Session) -> None:
    b = _app_b(ios)
    assert b.authorize(prompt="login").headers["Location"].endswith("/login")
    assert b.authorize(max_age="0").headers["Location"].endswith("/login")
    assert b.authorize(max_age="-1").headers["Location"].endswith("/login")
    assert b.authorize(max_age="86400").headers["Location"].endswith("/login/device")


def test_prompt_none_without_a_usable_session_is_login_required(
    ios: Session, app: Flask, provider: OIDCProvider
) -> None:
    b = _app_b(ios)
    assert b.authorize(prompt="none").headers["Location"].endswith("/login/device")
    fresh = Browser(app.test_client(), client_id="pub", redirect_uri=PUBLIC_REDIRECT)
    answered = fresh.authorize(prompt="none")
    assert answered.status_code == 302
    query = parse_qs(urlsplit(answered.headers["Location"]).query)
    assert query["error"] == ["login_required"]


def test_a_stolen_sid_or_a_forged_cookie_is_no_session(ios: Session, app: Flask) -> None:
    (created,) = _sessions(app)
    thief = Browser(app.test_client(), client_id="pub", redirect_uri=PUBLIC_REDIRECT)
    thief.client.set_cookie(COOKIE, created.public_id)
    assert thief.authorize().headers["Location"].endswith("/login")
    thief.client.set_cookie(COOKIE, "x" * 500)
    assert thief.authorize().headers["Location"].endswith("/login")


@pytest.mark.parametrize(
    "degrade",
    ["quarantine", "retire", "disable_user"],
)
def test_degrading_events_end_the_session_and_its_tokens(
    ios: Session, app: Flask, degrade: str
) -> None:
    core = _core(app)
    if degrade == "quarantine":
        ios.check_in(DeviceTraits(jailbroken=True))
        reason = "device_quarantined"
    elif degrade == "retire":
        core.enrollment.revoke_device(ios.device_id, actor="admin:test", reason="lost")
        reason = "device_retired"
    else:
        core.directory.set_active(USER, False)
        reason = "user_disabled"
    assert _live(app) == []
    (ended,) = _sessions(app)
    assert ended.revoked_reason == reason
    ios.assert_all_dead()
    b = _app_b(ios)
    assert b.authorize().headers["Location"].endswith("/login")  # credentials again
    events = _access_revoked(app)
    assert events and events[-1]["reason"] == reason and events[-1]["sessions"] == 1
    assert events[-1]["count"] >= 2  # the session and the token issuance


def test_logout_ends_the_session_and_its_tokens_and_redirects_exactly(
    ios: Session, app: Flask
) -> None:
    b = ios.browser
    bad = b.client.get(
        "/oauth/end_session?"
        + urlencode(
            {"id_token_hint": ios.tokens["id_token"], "post_logout_redirect_uri": LOGOUT + "x"}
        )
    )
    assert bad.status_code == 400 and "Location" not in bad.headers  # no open redirect
    assert _live(app) == []  # the session still ended: the user asked to sign out
    ios.assert_all_dead()


def test_logout_with_a_registered_uri_redirects_with_state(ios: Session, app: Flask) -> None:
    b = ios.browser
    response = b.client.get(
        "/oauth/end_session?"
        + urlencode(
            {
                "id_token_hint": ios.tokens["id_token"],
                "post_logout_redirect_uri": LOGOUT,
                "state": "st-1",
            }
        )
    )
    assert response.status_code == 303
    assert response.headers["Location"] == LOGOUT + "?state=st-1"
    cleared = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith(COOKIE))
    assert "max-age=0" in cleared.lower() or "expires=thu, 01 jan 1970" in cleared.lower()
    assert _live(app) == []
    assert ios.introspect(ios.tokens["access_token"]) == {"active": False}
    assert _app_b(ios).authorize().headers["Location"].endswith("/login")


def test_a_tampered_id_token_hint_is_refused_and_the_session_kept(ios: Session, app: Flask) -> None:
    hint = ios.tokens["id_token"][:-4] + "AAAA"
    response = ios.browser.client.get("/oauth/end_session?" + urlencode({"id_token_hint": hint}))
    assert response.status_code == 400
    assert len(_live(app)) == 1


def test_introspection_of_a_session_token_from_another_process_sees_the_revocation(
    ios: Session, app: Flask
) -> None:
    """State is in SQL: a second app on the same database (another process in production)."""
    from posture_gateway.app import create_app

    settings = app.extensions["posture"].settings
    other = create_app(settings)
    try:
        client = other.test_client()
        active = client.post(
            "/oauth/introspect", data={"token": ios.tokens["access_token"]}, headers=basic()
        ).get_json()
        assert active["active"] is True
        ios.check_in(DeviceTraits(jailbroken=True))
        after = client.post(
            "/oauth/introspect", data={"token": ios.tokens["access_token"]}, headers=basic()
        ).get_json()
        assert after == {"active": False}
    finally:
        other.extensions["posture"].core.close()


def _stale_block(device_id: str) -> Decision:
    return Decision(
        outcome="block",
        device_id=device_id,
        reasons=(Reason(code="posture_stale", message="No check-in for too long."),),
    )


def test_stale_posture_at_a_refresh_ends_the_devices_sessions_and_all_its_tokens(
    ios: Session, app: Flask, provider: OIDCProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A silent device sends no check-in to revoke on: the next decision that finds its
    posture stale (here a refresh) ends the session and every token, not only the family."""
    b = _app_b(ios)
    assert b.authorize().status_code == 303
    tokens_b = b.exchange(b.code_from(_prove(b, ios))).get_json()
    monkeypatch.setattr(
        provider.binding, "recheck", lambda **_: _stale_block(ios.device_id), raising=False
    )
    refused = ios.refresh()
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_grant"
    assert _live(app) == []
    (ended,) = _sessions(app)
    assert ended.revoked_reason == "posture_stale"
    assert ios.introspect(tokens_b["access_token"]) == {"active": False}  # app B's too
    assert _access_revoked(app)[-1]["reason"] == "posture_stale"


def test_only_a_stale_block_ends_access(ios: Session, app: Flask) -> None:
    from posture_gateway.sso.stale import StaleAccessEnder

    ender = StaleAccessEnder(_core(app).storage)
    other = Decision(
        outcome="block",
        device_id=ios.device_id,
        reasons=(Reason(code="app_not_allowed", message="x"),),
    )
    assert ender(other) == 0
    assert ender(Decision(outcome="allow", device_id=ios.device_id)) == 0
    assert ender(replace(_stale_block(ios.device_id), device_id=None)) == 0
    assert len(_live(app)) == 1
    assert ender(_stale_block(ios.device_id)) >= 2  # the session and the token issuance
    assert _live(app) == []


def test_stale_posture_at_a_login_in_the_session_ends_it_and_app_as_tokens(
    ios: Session, app: Flask, provider: OIDCProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.integration.oidc.conftest import StubGate

    monkeypatch.setattr(provider, "gate", StubGate(verdict=_stale_block(ios.device_id)))
    b = _app_b(ios)
    assert b.authorize().headers["Location"].endswith("/login/device")
    blocked = _prove(b, ios)
    assert blocked.status_code == 403  # the remediation page, nothing issued
    assert _live(app) == []
    assert ios.introspect(ios.tokens["access_token"]) == {"active": False}
    assert _access_revoked(app)[-1]["reason"] == "posture_stale"
