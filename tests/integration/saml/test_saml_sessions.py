"""SAML logins in the gateway SSO session, over HTTP, on SQLite and on PostgreSQL + Redis.

The gateway, an enrolled device and its real loopback helper run in-process
(:func:`tests.e2e.login_stack.login_stack`) with two independent node-saml SPs
(npm @node-saml/node-saml) that check every assertion with OUR metadata certificate. One
browser (one cookie jar) goes from application to application:

- OIDC then SAML, SAML then SAML (two SPs) then OIDC: one session, the password once, the
  device proven again at every login (channel ``saml``, app = the SP's entity id);
  ``SessionIndex`` is the session's ``sid`` (the ID token's), never the cookie value;
- ``ForceAuthn`` inside a session asks for the password again (a new ``AuthnInstant``);
- ``IsPassive`` inside a session: a passing device gets an assertion node-saml accepts; no
  proof, or another device's proof, gets an error Response (``AuthnFailed`` / ``NoPassive``),
  never an assertion, never a page;
- a revoked session (quarantine check-in, logout) is no session: the next SAML request asks
  for credentials (and the quarantined device then gets the remediation page, no Response),
  ``IsPassive`` answers ``NoPassive``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import pytest
from lxml import etree

from mdm_core.posture.model import Platform
from mdm_core.simulator.reports import DeviceTraits
from mdm_core.storage.sql.database import Database
from posture_gateway.sso.store import Session as SsoSession
from tests.e2e.login_stack import (
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    USER_ID,
    USERNAME,
    Stack,
    _check_in,
    login_stack,
)
from tests.e2e.saml_login import SamlAnswer, answer_of, http_saml_login, idp_certificate_pem
from tests.e2e.saml_sp import NodeSamlSp
from tests.helpers.enrolled import enroll_device
from tests.services import free_port

__all__: list[str] = []

pytestmark = [pytest.mark.peer]

SP_A = "urn:test:session-sp-a"
SP_B = "urn:test:session-sp-b"
COOKIE = "posture_sso"
_NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
}


@dataclass
class World:
    stack: Stack
    a: NodeSamlSp
    b: NodeSamlSp
    redirect_uri: str

    def sessions(self) -> list[SsoSession]:
        provider = self.stack.app.extensions["posture_oidc"]
        assert provider.sessions is not None
        return list(provider.sessions.list(user_id=USER_ID))

    def live(self) -> list[SsoSession]:
        now = datetime.now(UTC)
        return [s for s in self.sessions() if s.live(now)]


@pytest.fixture
def world(tmp_path: Path, database: Database, request: pytest.FixtureRequest) -> Iterator[World]:
    backend: dict[str, Any] = {"database_url": database.url}
    if not database.url.startswith("sqlite"):
        backend["redis_url"] = request.getfixturevalue("redis_url")
    redirect_uri = f"http://127.0.0.1:{free_port()}/cb"
    with NodeSamlSp(entity_id=SP_A) as a, NodeSamlSp(entity_id=SP_B) as b:
        providers = []
        for name, peer, attribute in (("a", a, "username"), ("b", b, "email")):
            path = tmp_path / f"{name}-metadata.xml"
            path.write_text(peer.metadata(), encoding="utf-8")
            providers.append(
                {
                    "metadata_file": str(path),
                    "name": f"SP {name}",
                    "nameid_attribute": attribute,
                    **(
                        {"nameid_format": "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"}
                        if attribute == "username"
                        else {}
                    ),
                }
            )
        settings = {**backend, "saml": {"service_providers": providers}}
        with login_stack(
            tmp_path, redirect_uri, Platform.ANDROID, DeviceTraits(), settings
        ) as stack:
            cert = idp_certificate_pem(stack.url)
            for peer in (a, b):
                peer.configure(
                    idp_cert=cert,
                    sso_url=stack.url + "/saml/sso",
                    idp_entity_id=stack.url + "/saml/metadata",
                )
            yield World(stack, a, b, redirect_uri)


# ---- helpers -------------------------------------------------------------------------------


def _follow(http: httpx.Client, response: httpx.Response, stop_at: str = "\0") -> httpx.Response:
    while response.status_code in (302, 303):
        location = response.headers["Location"]
        if location.startswith(stop_at):
            return response
        response = http.get(urljoin(str(response.url), location))
    return response


def _start(http: httpx.Client, url: str) -> str:
    """Where the gateway sends the browser first for a SAML request (a path)."""
    first = http.get(url)
    assert first.status_code == 303, first.text[:1500]
    assert first.headers["Location"].endswith("/saml/sso/continue")  # the SSO cookie's GET
    second = http.get(urljoin(str(first.url), first.headers["Location"]))
    assert second.status_code == 303, second.text[:1500]
    return second.headers["Location"]


def _root(answer: SamlAnswer) -> Any:
    return etree.fromstring(answer.response_xml.encode())


def _session_index(answer: SamlAnswer) -> str:
    statement = _root(answer).find(".//saml:AuthnStatement", _NS)
    assert statement is not None, answer.response_xml
    return str(statement.get("SessionIndex"))


def _authn_instant(answer: SamlAnswer) -> str:
    statement = _root(answer).find(".//saml:AuthnStatement", _NS)
    assert statement is not None, answer.response_xml
    return str(statement.get("AuthnInstant"))


def _status(answer: SamlAnswer) -> tuple[str, str | None]:
    codes = _root(answer).findall("samlp:Status//samlp:StatusCode", _NS)
    top = codes[0].get("Value", "")
    sub = codes[1].get("Value") if len(codes) > 1 else None
    return top.rsplit(":", 1)[-1], sub.rsplit(":", 1)[-1] if sub else None


def _no_assertion(answer: SamlAnswer) -> bool:
    root = _root(answer)
    return (
        root.find(".//saml:Assertion", _NS) is None
        and root.find(".//saml:EncryptedAssertion", _NS) is None
    )


def _accepted(peer: NodeSamlSp, answer: SamlAnswer) -> dict[str, Any]:
    assert answer.action == peer.acs_url, f"{answer.status}\n{answer.text[:2000]}"
    result = peer.validate(answer.saml_response, answer.fields.get("RelayState"))
    assert result["ok"] is True, result
    profile: dict[str, Any] = result["profile"]
    return profile


def _saml(world: World, http: httpx.Client, peer: NodeSamlSp, **kw: Any) -> tuple[str, SamlAnswer]:
    """A SAML login from ``peer``: where it went first (``/login`` or ``/login/device``) and
    the answer (the password is given when asked)."""
    login = peer.login(**kw)
    first = _start(http, login["url"])
    answer = http_saml_login(http, world.stack.url, urljoin(world.stack.url, first))
    return first, answer


def _oidc(world: World, http: httpx.Client) -> tuple[str, dict[str, Any]]:
    """An OIDC code flow login: where it went first and the ID token's claims."""
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": world.redirect_uri,
        "scope": "openid email",
        "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    url = world.stack.url
    first = http.get(url + "/oauth/authorize?" + urlencode(params))
    assert first.status_code == 303, first.text[:1500]
    where = first.headers["Location"]
    # the SAML helper drives the password and device pages; it stops at our redirect
    page = _follow(http, http.get(urljoin(url, where)))
    if 'name="password"' in page.text:
        csrf = _field(page.text, "csrf_token")
        page = _follow(
            http,
            http.post(
                url + "/login/password",
                data={"csrf_token": csrf, "username": USERNAME, "password": PASSWORD},
            ),
        )
    config = json.loads(
        page.text.split('id="device-config"', 1)[1].split(">", 1)[1].split("</script>", 1)[0]
    )
    proof = httpx.get(
        f"http://127.0.0.1:{config['port']}/v1/login-proof",
        params={"nonce": config["nonce"], "aud": config["aud"]},
        headers={"Origin": url},
        timeout=10,
    ).json()["proof"]
    done = http.post(
        url + "/login/device",
        data={"csrf_token": _field(page.text, "csrf_token"), "nonce": config["nonce"],
              "proof": proof},
    )  # fmt: skip
    if done.status_code == 200 and "/login/continue" in done.text:
        done = http.post(
            url + "/login/continue",
            data={"csrf_token": _field(done.text, "csrf_token"),
                  "ticket": _field(done.text, "ticket")},
        )  # fmt: skip
    done = _follow(http, done, stop_at=world.redirect_uri)
    location = done.headers.get("Location", "")
    assert location.startswith(world.redirect_uri), done.text[:2000]
    code = parse_qs(urlsplit(location).query)["code"][0]
    tokens = httpx.post(
        url + "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": world.redirect_uri,
            "code_verifier": verifier,
        },
        auth=(CLIENT_ID, CLIENT_SECRET),
        timeout=10,
    )
    assert tokens.status_code == 200, tokens.text
    payload = tokens.json()["id_token"].split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return where, claims


def _field(text: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', text)
    assert match, f"no {name} in:\n{text[:2000]}"
    return html.unescape(match.group(1))


def _device_page(world: World, http: httpx.Client, where: str) -> tuple[str, dict[str, Any]]:
    page = http.get(urljoin(world.stack.url, where))
    assert page.status_code == 200 and 'id="device-config"' in page.text, page.text[:1500]
    config = json.loads(
        page.text.split('id="device-config"', 1)[1].split(">", 1)[1].split("</script>", 1)[0]
    )
    return _field(page.text, "csrf_token"), config


def _saml_decisions(world: World, app: str) -> list[Any]:
    return [
        d
        for d in world.stack.decisions()
        if d.detail.get("channel") == "saml" and d.detail.get("app") == app
    ]


# ---- one session, several applications -------------------------------------------------------


def test_oidc_then_saml_in_one_session_skips_the_password_and_proves_the_device(
    world: World,
) -> None:
    with httpx.Client(timeout=15) as http:
        where, claims = _oidc(world, http)
        assert where.endswith("/login")  # the first login gives the password
        cookie = http.cookies.get(COOKIE)
        assert cookie
        (session,) = world.live()
        assert claims["sid"] == session.public_id
        first, answer = _saml(world, http, world.a, relay_state="a")
    assert first.endswith("/login/device")  # no password, the device proven again
    profile = _accepted(world.a, answer)
    assert profile["nameID"] == USERNAME
    assert profile["device_id"] == world.stack.device.device_id
    assert _session_index(answer) == session.public_id == claims["sid"]
    assert profile["sessionIndex"] == session.public_id  # as node-saml reads it
    assert _session_index(answer) != cookie  # never the cookie value
    assert cookie not in answer.response_xml
    # AuthnInstant: when the password was given (the session's), not this login
    assert _authn_instant(answer).startswith(session.auth_time.strftime("%Y-%m-%dT%H:%M:%S"))
    assert len(world.sessions()) == 1  # no second session
    # the one evaluator decided again, audited with channel saml and the SP as the app
    (decision,) = _saml_decisions(world, SP_A)
    assert decision.detail["user_id"] == USER_ID


def test_saml_then_saml_then_oidc_share_the_session_made_by_the_first_saml_login(
    world: World,
) -> None:
    with httpx.Client(timeout=15) as http:
        first, answer_a = _saml(world, http, world.a)
        assert first.endswith("/login")  # no session yet: the password
        profile_a = _accepted(world.a, answer_a)
        cookie = http.cookies.get(COOKIE)
        assert cookie  # a SAML login makes the SSO session (its own cookie)
        (session,) = world.live()
        assert session.device_id == world.stack.device.device_id
        assert session.user_id == USER_ID
        assert _session_index(answer_a) == session.public_id != cookie

        first_b, answer_b = _saml(world, http, world.b)
        assert first_b.endswith("/login/device")  # a second SP: no password
        profile_b = _accepted(world.b, answer_b)
        assert profile_b["nameID"] == "alice@example.com"
        assert _session_index(answer_b) == session.public_id
        assert _authn_instant(answer_b) == _authn_instant(answer_a)

        where, claims = _oidc(world, http)
    assert where.endswith("/login/device")  # and the OIDC app after them: no password
    assert claims["sid"] == session.public_id
    assert profile_a["device_id"] == profile_b["device_id"] == world.stack.device.device_id
    assert len(world.sessions()) == 1
    assert len(_saml_decisions(world, SP_A)) == 1 and len(_saml_decisions(world, SP_B)) == 1


def test_force_authn_inside_a_session_asks_the_password_again(world: World) -> None:
    with httpx.Client(timeout=15) as http:
        _, first_answer = _saml(world, http, world.a)
        _accepted(world.a, first_answer)
        time.sleep(1.1)  # AuthnInstant has a one-second grain: the new one must differ
        first, answer = _saml(world, http, world.b, force_authn=True)
    assert first.endswith("/login")  # credentials, although the session is live
    _accepted(world.b, answer)
    assert _authn_instant(answer) > _authn_instant(first_answer)  # the new time
    # the new credentials made a new session (its sid is the new SessionIndex)
    newest = world.sessions()[0]
    assert _session_index(answer) == newest.public_id != _session_index(first_answer)


def test_is_passive_inside_a_session_with_a_passing_device_gets_an_assertion(
    world: World,
) -> None:
    with httpx.Client(timeout=15) as http:
        _, answer_a = _saml(world, http, world.a)
        _accepted(world.a, answer_a)
        first, answer = _saml(world, http, world.b, passive=True, relay_state="p")
    # the device page runs by itself (no user interaction); the assertion follows
    assert first.endswith("/login/device")
    assert 'IsPassive="true"' in world.b.login(passive=True)["request_xml"]
    profile = _accepted(world.b, answer)
    assert answer.fields["RelayState"] == "p"
    assert profile["device_id"] == world.stack.device.device_id
    assert _session_index(answer) == _session_index(answer_a)


def test_is_passive_inside_a_session_without_a_device_proof_is_authn_failed(
    world: World,
) -> None:
    with httpx.Client(timeout=15) as http:
        _, answer_a = _saml(world, http, world.a)
        _accepted(world.a, answer_a)
        login = world.b.login(passive=True)
        where = _start(http, login["url"])
        assert where.endswith("/login/device")
        csrf, config = _device_page(world, http, where)
        # no agent answered: the page submits without a proof
        done = http.post(
            world.stack.url + "/login/device",
            data={"csrf_token": csrf, "nonce": config["nonce"], "proof": ""},
        )
    answer = answer_of(done)
    assert answer.action == world.b.acs_url, done.text[:2000]
    assert 'data-outcome="block"' not in done.text  # no remediation page: IsPassive
    assert _status(answer) == ("Responder", "AuthnFailed")
    assert _no_assertion(answer)
    assert _root(answer).get("InResponseTo") == login["request_id"]
    assert world.b.validate(answer.saml_response)["ok"] is False
    assert len(world.live()) == 1  # a missing proof does not end the session


def test_is_passive_inside_a_session_with_another_device_is_no_passive(world: World) -> None:
    other = enroll_device(world.stack.core, USER_ID, platform=Platform.LINUX)
    with httpx.Client(timeout=15) as http:
        _, answer_a = _saml(world, http, world.a)
        _accepted(world.a, answer_a)
        login = world.b.login(passive=True)
        where = _start(http, login["url"])
        csrf, config = _device_page(world, http, where)
        proof = other.login_proof(audience=config["aud"], nonce=config["nonce"])
        done = http.post(
            world.stack.url + "/login/device",
            data={"csrf_token": csrf, "nonce": config["nonce"], "proof": proof},
        )
        assert 'name="password"' not in done.text  # no credentials page: IsPassive
        answer = answer_of(done)
        assert answer.action == world.b.acs_url, done.text[:2000]
        assert _status(answer) == ("Requester", "NoPassive")
        assert _no_assertion(answer)
        # without IsPassive, the other device is asked for credentials again
        login = world.b.login()
        where = _start(http, login["url"])
        csrf, config = _device_page(world, http, where)
        proof = other.login_proof(audience=config["aud"], nonce=config["nonce"])
        again = http.post(
            world.stack.url + "/login/device",
            data={"csrf_token": csrf, "nonce": config["nonce"], "proof": proof},
        )
    assert again.status_code == 401 and 'name="password"' in again.text
    assert "SAMLResponse" not in again.text


# ---- a revoked session is no session ---------------------------------------------------------


def test_a_quarantine_ends_the_session_the_next_saml_login_asks_and_is_blocked(
    world: World,
) -> None:
    with httpx.Client(timeout=15) as http:
        _, answer_a = _saml(world, http, world.a)
        _accepted(world.a, answer_a)
        assert len(world.live()) == 1
        _check_in(
            world.stack.url, world.stack.device, Platform.ANDROID, DeviceTraits(jailbroken=True)
        )
        assert world.live() == []
        (ended,) = world.sessions()
        assert ended.revoked_reason == "device_quarantined"
        passive = world.b.login(passive=True)
        passive_answer = answer_of(_follow(http, http.get(passive["url"])))
        first, answer = _saml(world, http, world.b)
    # IsPassive: no session any more, NoPassive at once
    assert _status(passive_answer) == ("Requester", "NoPassive")
    assert _no_assertion(passive_answer)
    # otherwise credentials again, then the device check: remediation page, no Response
    assert first.endswith("/login")
    assert answer.status == 403 and 'data-outcome="block"' in answer.text
    assert answer.action is None and "SAMLResponse" not in answer.text


def test_logout_ends_the_session_the_next_saml_login_asks_for_credentials(
    world: World,
) -> None:
    with httpx.Client(timeout=15) as http:
        _, answer_a = _saml(world, http, world.a)
        _accepted(world.a, answer_a)
        signed_out = http.get(world.stack.url + "/oauth/end_session")
        assert signed_out.status_code == 200
        assert world.live() == []
        assert world.sessions()[0].revoked_reason == "logout"
        first, answer = _saml(world, http, world.b)
        assert first.endswith("/login")  # credentials again
        _accepted(world.b, answer)
    assert len(world.live()) == 1  # the new login made a new session
    assert _session_index(answer) != _session_index(answer_a)


def test_a_forged_cookie_is_no_session(world: World) -> None:
    with httpx.Client(timeout=15) as http:
        _, answer_a = _saml(world, http, world.a)
        _accepted(world.a, answer_a)
    with httpx.Client(timeout=15) as thief:
        # the SessionIndex (the sid) an SP saw, used as the cookie value: no session
        thief.cookies.set(COOKIE, _session_index(answer_a))
        login = world.b.login(passive=True)
        answer = answer_of(_follow(thief, thief.get(login["url"])))
    assert _status(answer) == ("Requester", "NoPassive")
    assert _no_assertion(answer)


def test_a_post_binding_request_inside_a_session_uses_it_after_the_top_level_get(
    world: World,
) -> None:
    """The SP's POST is cross-site: a browser withholds the SameSite=Lax SSO cookie from it
    (simulated: the cookie is out of the jar for the POST) and sends it on the GET after."""
    with httpx.Client(timeout=15) as http:
        _, answer_a = _saml(world, http, world.a)
        _accepted(world.a, answer_a)
        cookie = http.cookies.get(COOKIE)
        assert cookie
        login = world.b.login(relay_state="post")
        xml = login["request_xml"]
        http.cookies.delete(COOKIE)
        started = http.post(
            world.stack.url + "/saml/sso",
            data={"SAMLRequest": base64.b64encode(xml.encode()).decode(), "RelayState": "post"},
        )
        assert started.status_code == 303, started.text[:1500]
        http.cookies.set(COOKIE, cookie, domain="127.0.0.1")  # sent on the top-level GET
        resumed = http.get(urljoin(world.stack.url, started.headers["Location"]))
        assert resumed.headers["Location"].endswith("/login/device")  # no password
        answer = http_saml_login(
            http, world.stack.url, urljoin(world.stack.url, resumed.headers["Location"])
        )
    profile = _accepted(world.b, answer)
    assert profile["inResponseTo"] == login["request_id"]
    assert _session_index(answer) == _session_index(answer_a)


def test_stale_posture_at_a_passive_saml_login_ends_the_session_and_answers_authn_failed(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A silent device sends no check-in to revoke on: the block the evaluator finds at an
    IsPassive login ends its session too, although the answer is a SAML status, not a page."""
    from mdm_core.access.decision import Decision, Reason
    from tests.integration.oidc.conftest import StubGate

    with httpx.Client(timeout=15) as http:
        _, answer_a = _saml(world, http, world.a)
        _accepted(world.a, answer_a)
        stale = Decision(
            outcome="block",
            device_id=world.stack.device.device_id,
            reasons=(Reason(code="posture_stale", message="No check-in for too long."),),
        )
        provider = world.stack.app.extensions["posture_oidc"]
        monkeypatch.setattr(provider, "gate", StubGate(verdict=stale))
        _, answer = _saml(world, http, world.b, passive=True)
    assert _status(answer) == ("Responder", "AuthnFailed")
    assert _no_assertion(answer)
    assert world.live() == []
    assert world.sessions()[0].revoked_reason == "posture_stale"
