"""A deployment with the HR webhooks on, a BYOD device of the reference agent holding MDM-
installed apps and certificates, and a user signed in with live tokens.

:func:`hr_deployment` runs, with their default flags, ``posture --config FILE serve``,
``posture enroll token`` (BYOD), ``posture agent enroll --accept-notice``, ``posture agent
checkin`` and ``posture agent serve-loopback``, and ``posture admin add`` (a named admin for the
admin API). The apps and certificates are queued through the MDM core on the deployment's
database (as a configuration policy would) and installed by the agent at its check-in.
:func:`code_flow` signs the user in over HTTP (authorize + PKCE, password, device check
through the real helper) and exchanges the code: an SSO session and an access + refresh token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx

from mdm_core.runtime import MdmCore, build_core
from posture_gateway.app import core_config
from posture_gateway.hr.signature import sign
from posture_gateway.oidc.passwords import hash_client_secret, hash_password
from posture_gateway.settings import load_settings
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
from tests.services import free_port

__all__ = ["HrDeployment", "hr_deployment", "code_flow", "Tokens", "APPS", "CERTIFICATES"]

CLIENT_ID = "hr-e2e-app"
CLIENT_SECRET = "hr-e2e-app-secret-" + "s" * 32
REDIRECT_URI = "http://127.0.0.1:9/callback"  # never fetched: the code is read off the redirect
USER_ID = "u-alice"
USERNAME = "alice"
EMAIL = "alice@example.com"
PASSWORD = "alice-hr-e2e-password-1"
BAMBOO_KEY = "bamboohr-e2e-private-key-" + "k" * 24
APPS = ("com.example.mail", "com.example.chat")
CERTIFICATES = ("corp-wifi",)


@dataclass
class HrDeployment:
    url: str
    config: Path
    state_dir: Path
    agent_env: dict[str, str]
    device_id: str
    admin_token: str
    processes: list[_Process]
    clients: list[httpx.Client] = field(default_factory=list)  # closed at the end

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.output()[-4000:]}" for p in self.processes)

    def core(self) -> MdmCore:
        return build_core(core_config(load_settings(self.config, environ={})))

    def checkin(self) -> str:
        return _run(["agent", "checkin", "--state-dir", str(self.state_dir)], self.agent_env)

    def admin_get(self, path: str, **params: str) -> Any:
        answer = httpx.get(
            self.url + path,
            params=params,
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    def bamboohr(self, employees: list[dict[str, Any]], *, ts: int | None = None) -> httpx.Response:
        """A signed BambooHR delivery over HTTP (what BambooHR sends)."""
        body = json.dumps({"employees": employees}).encode()
        stamp = str(int(time.time()) if ts is None else ts)
        return httpx.post(
            self.url + "/hr/v1/webhooks/bamboohr",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-BambooHR-Timestamp": stamp,
                "X-BambooHR-Signature": sign(BAMBOO_KEY.encode(), body, stamp),
            },
            timeout=15,
        )


def _write_files(tmp: Path) -> tuple[Path, Path, Path]:
    clients = tmp / "clients.yaml"
    clients.write_text(
        f"""
clients:
  - client_id: {CLIENT_ID}
    name: HR e2e app
    client_secret_hash: "{hash_client_secret(CLIENT_SECRET)}"
    redirect_uris: ["{REDIRECT_URI}"]
    scopes: [openid, profile, email]
    grant_types: [authorization_code, refresh_token]
""",
        encoding="utf-8",
    )
    users = tmp / "users.yaml"
    users.write_text(
        f"""
users:
  - username: {USERNAME}
    user_id: {USER_ID}
    password_hash: "{hash_password(PASSWORD, n=2**10)}"
    email: {EMAIL}
    name: Alice Example
""",
        encoding="utf-8",
    )
    key = tmp / "bamboohr.key"
    key.write_text(BAMBOO_KEY + "\n", encoding="utf-8")
    key.chmod(0o600)
    return clients, users, key


@contextmanager
def hr_deployment(tmp: Path, backend: dict[str, str]) -> Iterator[HrDeployment]:
    port, helper_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    clients, users, key = _write_files(tmp)
    config = tmp / "posture.yaml"
    lines = [
        f"data_dir: {tmp / 'server'}",
        f"public_url: {url}",
        f"policy_dir: {POLICY_DIR}",
        "dev_mode: true",
        *(f"{k}: {v}" for k, v in backend.items()),
        "oidc:",
        f"  clients_file: {clients}",
        f"  users_file: {users}",
        f"  agent_port: {helper_port}",
        "hr:",
        "  bamboohr:",
        f"    secret_file: {key}",
        "offboarding:",
        "  interval: 1s",
    ]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    host = FixtureHost(tmp / "host")
    env = _env()
    agent_env = _env({"POSTURE_AGENT_HOST_ROOT": str(host.root)})
    state_dir = tmp / "agent-state"
    processes: list[_Process] = []
    dep: HrDeployment | None = None
    try:
        server = _start(
            "posture serve", ["--config", str(config), "serve", "--port", str(port)], env, tmp
        )
        processes.append(server)
        _wait_until(
            lambda: httpx.get(url + "/readyz", timeout=2).status_code == 200,
            "posture serve",
            server,
        )
        token_args = ["--config", str(config), "enroll", "token", "--user", USER_ID]
        token = _run([*token_args, "--ownership", "byod", "--platform", "linux"], env)
        token = token.strip().splitlines()[-1]
        agent = ["agent", "enroll", "--state-dir", str(state_dir), "--server", url]
        enrolled = _run(
            [*agent, "--token", token, "--ownership", "byod", "--accept-notice"], agent_env
        )
        match = re.search(r"enrolled as device (\S+)", enrolled)
        assert match, enrolled
        device_id = match.group(1)
        # The MDM installs the work apps and certificates (as a configuration policy would).
        core = build_core(core_config(load_settings(config, environ={})))
        try:
            for app_id in APPS:
                core.commands.enqueue(
                    device_id, "install_app", {"app_id": app_id}, created_by="admin:e2e"
                )
            for name in CERTIFICATES:
                core.commands.enqueue(
                    device_id, "install_certificate", {"name": name}, created_by="admin:e2e"
                )
        finally:
            core.close()
        _run(["agent", "checkin", "--state-dir", str(state_dir)], agent_env)
        added = _run(["--config", str(config), "admin", "add", "hana", "--role", "admin"], env)
        admin_token = re.findall(r"pga_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", added)
        assert admin_token, added
        helper = _start(
            "posture agent serve-loopback",
            ["agent", "serve-loopback", "--state-dir", str(state_dir), "--gateway-origin", url]
            + ["--port", str(helper_port)],
            agent_env,
            tmp,
        )
        processes.append(helper)
        _wait_until(
            lambda: (
                httpx.get(
                    f"http://127.0.0.1:{helper_port}/v1/login-proof", headers={"Origin": url}
                ).status_code
                == 400
            ),
            "the login helper",
            helper,
        )
        dep = HrDeployment(
            url=url,
            config=config,
            state_dir=state_dir,
            agent_env=agent_env,
            device_id=device_id,
            admin_token=admin_token[0],
            processes=processes,
        )
        yield dep
    finally:
        for process in reversed(processes):
            _stop(process)
        if dep is not None:
            for client in dep.clients:
                client.close()


@dataclass
class Tokens:
    access_token: str
    refresh_token: str
    http: httpx.Client  # holds the SSO session cookie


def _basic() -> str:
    return "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()


def _authorize_url(dep: HrDeployment, verifier: str) -> str:
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    query = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile email",
        "state": secrets.token_urlsafe(16),
        "nonce": secrets.token_urlsafe(16),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return f"{dep.url}/oauth/authorize?{urlencode(query)}"


def _until_callback(http: httpx.Client, response: httpx.Response) -> httpx.Response:
    while response.status_code in (302, 303):
        location = response.headers["Location"]
        if location.startswith(REDIRECT_URI):
            return response
        response = http.get(httpx.URL(str(response.url)).join(location))
    return response


def code_flow(dep: HrDeployment) -> Tokens:
    """Sign the user in like the login page does; returns the tokens and the session."""
    http = httpx.Client(timeout=15)
    dep.clients.append(http)
    verifier = secrets.token_urlsafe(48)
    page = _until_callback(http, http.get(_authorize_url(dep, verifier)))
    assert page.status_code == 200 and 'name="password"' in page.text, page.text[:2000]
    posted = http.post(
        dep.url + "/login/password",
        data={"csrf_token": _field(page.text, "csrf_token"), "username": USERNAME,
              "password": PASSWORD},
    )  # fmt: skip
    device_page = _until_callback(http, posted)
    config_match = _DEVICE_CONFIG.search(device_page.text)
    assert config_match, device_page.text[:2000]
    config = json.loads(config_match.group(1))
    proof = httpx.get(
        f"http://127.0.0.1:{config['port']}/v1/login-proof",
        params={"nonce": config["nonce"], "aud": config["aud"]},
        headers={"Origin": dep.url},
        timeout=10,
    )
    assert proof.status_code == 200, proof.text
    answer = http.post(
        dep.url + "/login/device",
        data={"csrf_token": _field(device_page.text, "csrf_token"), "nonce": config["nonce"],
              "proof": proof.json()["proof"]},
    )  # fmt: skip
    if answer.status_code == 200 and 'data-outcome="warn"' in answer.text:
        answer = http.post(
            dep.url + "/login/continue",
            data={"csrf_token": _field(answer.text, "csrf_token"),
                  "ticket": _field(answer.text, "ticket")},
        )  # fmt: skip
    answer = _until_callback(http, answer)
    assert answer.status_code in (302, 303), f"{answer.status_code}: {answer.text[:2000]}"
    code = parse_qs(urlparse(answer.headers["Location"]).query)["code"][0]
    issued = httpx.post(
        dep.url + "/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
              "code_verifier": verifier},
        headers={"Authorization": _basic()},
        timeout=15,
    )  # fmt: skip
    assert issued.status_code == 200, issued.text
    body = issued.json()
    assert "refresh_token" in body, body
    return Tokens(body["access_token"], body["refresh_token"], http)


def introspect(dep: HrDeployment, token: str) -> bool:
    answer = httpx.post(
        dep.url + "/oauth/introspect",
        data={"token": token},
        headers={"Authorization": _basic()},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return bool(answer.json()["active"])


def refresh(dep: HrDeployment, refresh_token: str) -> httpx.Response:
    return httpx.post(
        dep.url + "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        headers={"Authorization": _basic()},
        timeout=15,
    )


def authorize_again(dep: HrDeployment, tokens: Tokens) -> httpx.Response:
    """The same browser (its SSO session cookie) asks for a login again."""
    return _until_callback(
        tokens.http, tokens.http.get(_authorize_url(dep, secrets.token_urlsafe(48)))
    )
