"""SSO sessions and revocation through the product as it ships (issue 10, items 1, 2, 6).

Per backend (the embedded default, and PostgreSQL + Redis): ``posture --config FILE serve``
with its default flags (granian, 2 workers), ``posture enroll token``, the reference agent
(``posture agent enroll`` / ``checkin`` / ``serve-loopback``) on a fixture host, and two
relying parties registered in the clients file. An HTTP client does what the login page does,
with its cookie jar and no connection reuse (each request may reach either worker):

- app A: password + device proof -> code -> tokens; the SSO cookie is set;
- app B in the same browser: no password page, a NEW device proof (the helper is asked again),
  same ``sid``;
- logout (``id_token_hint`` + registered ``post_logout_redirect_uri`` + ``state``) ends the
  session and its tokens; the next authorize asks for the password;
- log in again, then the device degrades (its root file system leaves dm-crypt) and the agent
  checks in: sessions and tokens are dead (introspection inactive, refresh refused), the next
  authorize asks for the password, the gauge reads 0;
- ``posture serve`` is SIGKILLed right after that check-in answered and restarted: the
  ``access.revoked`` event is in the outbox and is delivered (published) after the restart.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import jwt
import pytest
from sqlalchemy import select, update

from mdm_core.bus.events import EventType
from mdm_core.runtime import build_core
from mdm_core.storage.directory import DirectoryUser
from mdm_core.storage.sql.tables import outbox
from posture_gateway.app import core_config
from posture_gateway.observability.live_credentials import (
    noncompliant_devices_with_live_credentials,
)
from posture_gateway.oidc.passwords import hash_client_secret, hash_password
from posture_gateway.settings import load_settings
from tests.conftest import _fresh_postgres_db
from tests.e2e.deployment import (
    _DEVICE_CONFIG,
    FixtureHost,
    _env,
    _field,
    _Process,
    _run,
    _start,
    _stop,
    _wait_until,
)
from tests.e2e.live_server import POLICY_DIR
from tests.e2e.login_stack import PASSWORD, USER_ID, USERNAME
from tests.services import free_port

pytestmark = [pytest.mark.slow]

SECRET = "sso-app-secret-" + "s" * 32
LOGOUT = "http://127.0.0.1:9/bye"


VERIFIER = "v" * 43
_CHALLENGE = (
    base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).decode().rstrip("=")
)


def _redirect(app: str) -> str:
    return f"http://127.0.0.1:9/{app}/cb"  # never fetched: the code is read from Location


@pytest.fixture(
    params=[
        "embedded",
        pytest.param("postgres+redis", marks=[pytest.mark.postgres, pytest.mark.redis]),
    ]
)
def backend(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "embedded":
        return {}
    return {
        "database_url": _fresh_postgres_db(request.getfixturevalue("postgres_server_url")),
        "redis_url": request.getfixturevalue("redis_url"),
    }


class Stack:
    def __init__(self, tmp: Path, backend: dict[str, str]) -> None:
        self.tmp = tmp
        self.port, self.helper_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = self._write_config(backend)
        self.host = FixtureHost(tmp / "host")
        self.env = _env()
        self.agent_env = _env({"POSTURE_AGENT_HOST_ROOT": str(self.host.root)})
        self.state_dir = tmp / "agent-state"
        self.processes: list[_Process] = []
        self.server: _Process | None = None
        self.device_id = ""

    def _write_config(self, backend: dict[str, str]) -> Path:
        clients = self.tmp / "clients.yaml"
        entries = "".join(
            f"""
  - client_id: {app}
    client_secret_hash: "{hash_client_secret(SECRET)}"
    redirect_uris: ["{_redirect(app)}"]
    post_logout_redirect_uris: ["{LOGOUT}"]
    scopes: [openid, profile, email]
    grant_types: [authorization_code, refresh_token]
"""
            for app in ("app-a", "app-b")
        )
        clients.write_text("clients:" + entries, encoding="utf-8")
        users = self.tmp / "users.yaml"
        users.write_text(
            f"""
users:
  - username: {USERNAME}
    user_id: {USER_ID}
    password_hash: "{hash_password(PASSWORD, n=2**10)}"
""",
            encoding="utf-8",
        )
        config = self.tmp / "posture.yaml"
        lines = [
            f"data_dir: {self.tmp / 'server'}",
            f"public_url: {self.url}",
            f"policy_dir: {POLICY_DIR}",
            "dev_mode: true",
            *(f"{k}: {v}" for k, v in backend.items()),
            "oidc:",
            f"  clients_file: {clients}",
            f"  users_file: {users}",
            f"  agent_port: {self.helper_port}",
        ]
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return config

    def start_server(self) -> None:
        server = _start(
            "posture serve",
            ["--config", str(self.config), "serve", "--port", str(self.port)],
            self.env,
            self.tmp,
        )
        self.processes.append(server)
        self.server = server
        _wait_until(
            lambda: httpx.get(self.url + "/readyz", timeout=2).status_code == 200,
            "posture serve",
            server,
        )

    def kill_server(self) -> None:
        assert self.server is not None
        os.killpg(self.server.proc.pid, signal.SIGKILL)  # the server and its workers, at once
        self.server.proc.wait(timeout=20)

    def core(self) -> Any:
        return build_core(core_config(load_settings(self.config, environ={})))

    def enroll(self) -> None:
        core = self.core()
        try:
            core.directory.upsert_user(
                DirectoryUser(USER_ID, USERNAME, True, "local", datetime.now(UTC))
            )
        finally:
            core.close()
        args = ["--config", str(self.config), "enroll", "token", "--user", USER_ID]
        token = _run([*args, "--ownership", "corporate", "--platform", "linux"], self.env)
        agent = ["agent", "enroll", "--state-dir", str(self.state_dir), "--server", self.url]
        enrolled = _run(
            [*agent, "--token", token.strip().splitlines()[-1], "--ownership", "corporate"],
            self.agent_env,
        )
        match = re.search(r"enrolled as device (\S+)", enrolled)
        assert match, enrolled
        self.device_id = match.group(1)
        self.check_in()
        helper = _start(
            "posture agent serve-loopback",
            ["agent", "serve-loopback", "--state-dir", str(self.state_dir)]
            + ["--gateway-origin", self.url, "--port", str(self.helper_port)],
            self.agent_env,
            self.tmp,
        )
        self.processes.append(helper)
        _wait_until(
            lambda: (
                httpx.get(
                    f"http://127.0.0.1:{self.helper_port}/v1/login-proof",
                    headers={"Origin": self.url},
                ).status_code
                == 400
            ),
            "the login helper",
            helper,
        )

    def check_in(self) -> str:
        return _run(["agent", "checkin", "--state-dir", str(self.state_dir)], self.agent_env)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.output()[-4000:]}" for p in self.processes)


@pytest.fixture
def stack(tmp_path: Path, backend: dict[str, str]) -> Iterator[Stack]:
    s = Stack(tmp_path, backend)
    try:
        s.start_server()
        s.enroll()
        yield s
    finally:
        for process in reversed(s.processes):
            _stop(process)


# ---- a browser, over HTTP -------------------------------------------------------------------


class Browser:
    """One browser: a cookie jar, no connection reuse (either worker may answer)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.http = httpx.Client(timeout=20, limits=httpx.Limits(max_keepalive_connections=0))
        self.proofs = 0

    def close(self) -> None:
        self.http.close()

    def _follow(self, response: httpx.Response, stop_at: str) -> httpx.Response:
        while response.status_code in (302, 303):
            location = response.headers["Location"]
            if location.startswith(stop_at):
                return response
            response = self.http.get(urljoin(str(response.url), location))
        return response

    def authorize(self, app: str, **extra: str) -> tuple[httpx.Response, dict[str, str]]:
        params = {
            "response_type": "code",
            "client_id": app,
            "redirect_uri": _redirect(app),
            "scope": "openid profile email",
            "state": os.urandom(8).hex(),
            "nonce": os.urandom(8).hex(),
            "code_challenge": _CHALLENGE,
            "code_challenge_method": "S256",
            **extra,
        }
        first = self.http.get(self.stack.url + "/oauth/authorize?" + urlencode(params))
        return self._follow(first, _redirect(app)), params

    def password(self, page: httpx.Response, app: str) -> httpx.Response:
        assert page.status_code == 200 and 'name="password"' in page.text, page.text[:1500]
        posted = self.http.post(
            self.stack.url + "/login/password",
            data={
                "csrf_token": _field(page.text, "csrf_token"),
                "username": USERNAME,
                "password": PASSWORD,
            },
        )
        return self._follow(posted, _redirect(app))

    def prove(self, device_page: httpx.Response, app: str) -> httpx.Response:
        assert device_page.status_code == 200, device_page.text[:1500]
        match = _DEVICE_CONFIG.search(device_page.text)
        assert match, device_page.text[:1500]
        config = json.loads(match.group(1))
        proof = httpx.get(
            f"http://127.0.0.1:{config['port']}/v1/login-proof",
            params={"nonce": config["nonce"], "aud": config["aud"]},
            headers={"Origin": self.stack.url},
            timeout=10,
        )
        assert proof.status_code == 200, proof.text
        self.proofs += 1
        answer = self.http.post(
            self.stack.url + "/login/device",
            data={
                "csrf_token": _field(device_page.text, "csrf_token"),
                "nonce": config["nonce"],
                "proof": proof.json()["proof"],
            },
        )
        if answer.status_code == 200 and 'data-outcome="warn"' in answer.text:
            answer = self.http.post(
                self.stack.url + "/login/continue",
                data={
                    "csrf_token": _field(answer.text, "csrf_token"),
                    "ticket": _field(answer.text, "ticket"),
                },
            )
        return self._follow(answer, _redirect(app))

    def tokens(self, answer: httpx.Response, app: str, params: dict[str, str]) -> dict[str, Any]:
        assert answer.status_code in (302, 303), f"{answer.status_code} {answer.text[:1500]}"
        query = parse_qs(urlsplit(answer.headers["Location"]).query)
        assert query["state"] == [params["state"]], query
        exchanged = httpx.post(
            self.stack.url + "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": query["code"][0],
                "redirect_uri": _redirect(app),
                "code_verifier": VERIFIER,
            },
            auth=(app, SECRET),
            timeout=20,
        )
        assert exchanged.status_code == 200, exchanged.text
        body: dict[str, Any] = exchanged.json()
        return body

    def login_with_password(self, app: str) -> dict[str, Any]:
        page, params = self.authorize(app)
        return self.tokens(self.prove(self.password(page, app), app), app, params)


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _introspect(stack: Stack, token: str, hint: str | None = None) -> dict[str, Any]:
    data = {"token": token, **({"token_type_hint": hint} if hint else {})}
    answer = httpx.post(
        stack.url + "/oauth/introspect", data=data, auth=("app-a", SECRET), timeout=20
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _refresh(stack: Stack, app: str, refresh_token: str) -> httpx.Response:
    return httpx.post(
        stack.url + "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(app, SECRET),
        timeout=20,
    )


def _access_revoked_rows(stack: Stack) -> list[Any]:
    core = stack.core()
    try:
        with core.database.engine.connect() as conn:
            return list(
                conn.execute(
                    select(outbox.c.event_id, outbox.c.payload, outbox.c.published_at)
                    .where(outbox.c.type == EventType.ACCESS_REVOKED)
                    .order_by(outbox.c.id)
                ).all()
            )
    finally:
        core.close()


def test_sso_across_two_apps_logout_degrade_and_a_crash(stack: Stack) -> None:
    browser = Browser(stack)
    try:
        # -- app A: password + device
        a = browser.login_with_password("app-a")
        sid = _claims(a["id_token"])["sid"]
        assert browser.http.cookies.get("posture_sso"), "no SSO cookie"
        # -- app B in the same browser: no password, a new device proof, the same session
        page, params = browser.authorize("app-b")
        assert 'name="password"' not in page.text and _DEVICE_CONFIG.search(page.text), (
            page.text[:1500] + stack.logs()
        )
        proofs = browser.proofs
        b = browser.tokens(browser.prove(page, "app-b"), "app-b", params)
        assert browser.proofs == proofs + 1
        claims_b = _claims(b["id_token"])
        assert claims_b["sid"] == sid and claims_b["aud"] == "app-b"
        assert claims_b["device_id"] == stack.device_id
        # -- logout ends the session and its tokens (either worker)
        out = browser.http.get(
            stack.url
            + "/oauth/end_session?"
            + urlencode(
                {
                    "id_token_hint": b["id_token"],
                    "post_logout_redirect_uri": LOGOUT,
                    "state": "bye-1",
                }
            )
        )
        assert out.status_code == 303 and out.headers["Location"] == LOGOUT + "?state=bye-1"
        assert _introspect(stack, a["access_token"]) == {"active": False}
        assert _refresh(stack, "app-b", b["refresh_token"]).json()["error"] == "invalid_grant"
        again, _ = browser.authorize("app-b")
        assert 'name="password"' in again.text  # credentials again

        # -- a new session, then the device degrades and the agent checks in
        a2 = browser.login_with_password("app-a")
        assert _introspect(stack, a2["access_token"])["active"] is True
        stack.host.set_encrypted(False)
        stack.check_in()  # answered: the revocation committed with the quarantine
        stack.kill_server()  # SIGKILL right after the degrading check-in answered
        rows = _access_revoked_rows(stack)
        degrading = [r for r in rows if r.payload["reason"] == "device_quarantined"]
        assert len(degrading) == 1, rows
        assert degrading[0].payload["sessions"] == 1 and degrading[0].payload["count"] >= 2
        assert degrading[0].payload["device_id"] == stack.device_id
        # The relay may have published it before the kill: make sure the restart delivers it
        # (as after a crash between the commit and the relay; consumers dedupe by event id).
        core = stack.core()
        try:
            with core.database.engine.begin() as conn:
                conn.execute(
                    update(outbox)
                    .where(outbox.c.event_id == degrading[0].event_id)
                    .values(published_at=None)
                )
            assert noncompliant_devices_with_live_credentials(core.database) == 0
        finally:
            core.close()
        stack.start_server()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            (row,) = [r for r in _access_revoked_rows(stack) if r.event_id == degrading[0].event_id]
            if row.published_at is not None:
                break
            time.sleep(0.2)
        assert row.published_at is not None, "access.revoked not delivered after the restart"
        # Dead everywhere: introspection, refresh, and the next authorize asks for the password.
        assert _introspect(stack, a2["access_token"]) == {"active": False}
        assert _introspect(stack, a2["refresh_token"], "refresh_token") == {"active": False}
        assert _refresh(stack, "app-a", a2["refresh_token"]).json()["error"] == "invalid_grant"
        info = httpx.get(
            stack.url + "/oauth/userinfo",
            headers={"Authorization": f"Bearer {a2['access_token']}"},
            timeout=20,
        )
        assert info.status_code == 401
        after, _ = browser.authorize("app-b")
        assert 'name="password"' in after.text, after.text[:1500]
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.logs()}") from exc
    finally:
        browser.close()
