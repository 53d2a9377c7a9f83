"""Several ``posture serve`` processes on one private PostgreSQL and one private Redis.

:func:`cluster` starts a private PostgreSQL and Redis (:mod:`tests.services`, which can stop
them mid-run and bring them back on the same port and data directory), writes ONE config file
pointing at both and runs ``posture --config FILE serve --port P`` once per instance with the
default flags (granian, the default worker count). The instances share the config, the data
directory (CA, secret key) and the public URL, as the nodes of one deployment behind a load
balancer do; the tests talk to each instance on its own port.

The helpers drive what the outside world does, each on a fresh connection:

- :func:`check_in`: a device's signed check-in (:class:`tests.helpers.enrolled.EnrolledDevice`);
- :func:`decide`: the posture API (``POST /api/v1/decision``) with a client-credentials token;
- :func:`oidc_login`: a code flow (authorize, password, device step with a login proof, the
  warning notice if any, code exchange) on one instance; :func:`login_device_step` stops at
  the device step's answer;
- :func:`refresh` and :func:`introspect`: the token endpoint and RFC 7662 introspection.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import yaml

from mdm_core.posture.model import Ownership, Platform
from mdm_core.runtime import MdmCore, build_core
from mdm_core.simulator.reports import DeviceTraits, native_reports
from mdm_core.storage.directory import DirectoryUser
from posture_gateway.app import core_config
from posture_gateway.oidc.passwords import hash_client_secret, hash_password
from posture_gateway.settings import load_settings
from tests.e2e.live_server import POLICY_DIR
from tests.helpers.enrolled import EnrolledDevice, enroll_device
from tests.services import PrivatePostgres, PrivateRedis, free_port

__all__ = [
    "APP_CLIENT",
    "all_workers_started",
    "Cluster",
    "PASSWORD",
    "REDIRECT",
    "USER_ID",
    "USERNAME",
    "check_in",
    "cluster",
    "decide",
    "device_step",
    "field_value",
    "finish_login",
    "introspect",
    "login_device_step",
    "oidc_login",
    "refresh",
    "start_login",
]

ROOT = Path(__file__).resolve().parents[2]
POSTURE = [sys.executable, "-m", "posture_gateway.cli.main"]
USER_ID, USERNAME, PASSWORD = "u-alice", "alice", "alice-cluster-password-1"
APP_CLIENT, APP_SECRET = "payroll", "payroll-secret-" + "p" * 32
API_CLIENT, API_SECRET = "okta-idp", "okta-idp-secret-" + "o" * 32
REDIRECT = "https://app.example/cb"


@dataclass
class Instance:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class Cluster:
    public_url: str
    config: Path
    pg: PrivatePostgres
    redis: PrivateRedis
    instances: list[Instance] = field(default_factory=list)
    _token: str | None = None

    @property
    def a(self) -> str:
        return self.instances[0].url

    @property
    def b(self) -> str:
        return self.instances[1].url

    def logs(self) -> str:
        return "\n".join(f"--- {i.url} ---\n{i.output()[-4000:]}" for i in self.instances)

    def core(self) -> MdmCore:
        """The MDM core on the cluster's database and Redis (set-up, as an admin would)."""
        return build_core(core_config(load_settings(self.config, environ={})))

    def api_token(self, url: str | None = None) -> str:
        """A posture-API access token (client credentials), fetched once."""
        if self._token is None:
            res = httpx.post(
                (url or self.a) + "/oauth/token",
                data={"grant_type": "client_credentials", "scope": "posture.decide"},
                auth=(API_CLIENT, API_SECRET),
                timeout=15,
            )
            assert res.status_code == 200, res.text
            self._token = str(res.json()["access_token"])
        return self._token

    def enroll(self, n: int = 1) -> list[EnrolledDevice]:
        """``n`` corporate Android devices of the user, enrolled through the MDM core."""
        core = self.core()
        try:
            return [
                enroll_device(
                    core, USER_ID, ownership=Ownership.CORPORATE, platform=Platform.ANDROID
                )
                for _ in range(n)
            ]
        finally:
            core.close()


def _write_config(
    tmp: Path,
    public_url: str,
    database_url: str,
    redis_url: str,
    policy_dir: Path,
    agent_port: int | None,
    extra: dict[str, Any] | None = None,
) -> Path:
    clients = tmp / "clients.yaml"
    clients.write_text(
        "clients:\n"
        f"  - client_id: {APP_CLIENT}\n"
        f"    client_secret_hash: '{hash_client_secret(APP_SECRET)}'\n"
        f"    redirect_uris: ['{REDIRECT}']\n"
        "    scopes: [openid, profile, email]\n"
        "    grant_types: [authorization_code, refresh_token]\n"
        f"  - client_id: {API_CLIENT}\n"
        f"    client_secret_hash: '{hash_client_secret(API_SECRET)}'\n"
        "    redirect_uris: ['https://unused.example/cb']\n",
        encoding="utf-8",
    )
    users = tmp / "users.yaml"
    users.write_text(
        "users:\n"
        f"  - username: {USERNAME}\n"
        f"    user_id: {USER_ID}\n"
        f"    password_hash: '{hash_password(PASSWORD, n=2**10)}'\n"
        "    email: alice@example.com\n",
        encoding="utf-8",
    )
    config = tmp / "posture.yaml"
    config.write_text(
        "\n".join(
            [
                f"data_dir: {tmp / 'server'}",
                f"public_url: {public_url}",
                f"policy_dir: {policy_dir}",
                "dev_mode: true",
                f"database_url: {database_url}",
                f"redis_url: {redis_url}",
                "oidc:",
                f"  clients_file: {clients}",
                f"  users_file: {users}",
                *([f"  agent_port: {agent_port}"] if agent_port else []),
                "integrations:",
                "  posture_api:",
                f"    oauth_clients: [{API_CLIENT}]",
            ]
        )
        + "\n"
        + (yaml.safe_dump(extra, sort_keys=False) if extra else ""),
        encoding="utf-8",
    )
    return config


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTURE_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _serve(config: Path, port: int, tmp: Path) -> Instance:
    log = tmp / f"serve-{port}.log"
    out: IO[bytes]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*POSTURE, "--config", str(config), "serve", "--port", str(port)],
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the workers end with it
        )
    return Instance(f"http://127.0.0.1:{port}", proc, log)


def _stop(instance: Instance) -> None:
    if instance.proc.poll() is None:
        os.killpg(instance.proc.pid, signal.SIGTERM)
        try:
            instance.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(instance.proc.pid, signal.SIGKILL)
            instance.proc.wait(timeout=10)


_GRANIAN_WORKERS = re.compile(r"with granian \((\d+) workers?\)")


def all_workers_started(output: str) -> bool:
    """Granian logs ``Started worker-N`` once a worker has built its app: a ready answer
    from one worker does not mean the other has (under load it may still be booting, and a
    test that stops Redis or PostgreSQL then would fail that worker's start)."""
    found = _GRANIAN_WORKERS.search(output)
    if found is None:  # another server: its readiness answer is all there is
        return True
    return output.count("Started worker-") >= int(found.group(1))


def wait_ready(instance: Instance, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert instance.alive(), f"{instance.url} exited:\n{instance.output()}"
        try:
            if httpx.get(
                instance.url + "/readyz", timeout=2
            ).status_code == 200 and all_workers_started(instance.output()):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{instance.url} not ready in {timeout} s:\n{instance.output()}")


@contextmanager
def cluster(
    tmp: Path,
    *,
    instances: int = 2,
    durable: bool = False,
    policy_dir: Path = POLICY_DIR,
    agent_port: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Iterator[Cluster]:
    """``instances`` servers on a private PostgreSQL (``durable``: fsync on) and Redis;
    ``agent_port`` is the login helper's port the login page names (``oidc.agent_port``);
    ``extra`` adds top-level config sections (e.g. ``signals``)."""
    pg, redis = PrivatePostgres(durable=durable), PrivateRedis()
    pg_url, redis_url = pg.start(), redis.start()
    try:
        ports = [free_port() for _ in range(instances)]
        public_url = f"http://127.0.0.1:{ports[0]}"
        config = _write_config(tmp, public_url, pg_url, redis_url, policy_dir, agent_port, extra)
        built = Cluster(public_url=public_url, config=config, pg=pg, redis=redis)
        try:
            core = built.core()  # migrates, creates the CA and the data directory first
            try:
                core.directory.upsert_user(
                    DirectoryUser(
                        id=USER_ID, username=USERNAME, email="alice@example.com", active=True,
                        source="local",
                        updated_at=datetime.now(UTC),
                    )
                )  # fmt: skip
            finally:
                core.close()
            for port in ports:  # one at a time: the first creates the shared secret key
                built.instances.append(_serve(config, port, tmp))
                wait_ready(built.instances[-1])
            yield built
        finally:
            for instance in reversed(built.instances):
                _stop(instance)
    finally:
        redis.stop()
        pg.stop()


# ---- what devices, IdPs and browsers do ----------------------------------------------------


def check_in(
    c: Cluster, url: str, dev: EnrolledDevice, traits: DeviceTraits, *, timeout: float = 15
) -> httpx.Response:
    """The device's signed check-in(s) at ``url``; the last answer (callers check it)."""
    res: httpx.Response | None = None
    with httpx.Client(timeout=timeout) as http:
        for fmt, report in native_reports("android", "S-" + dev.device_id[:8], "corporate", traits):
            body = json.dumps({"format": fmt, "report": report}).encode()
            proof = dev.request_proof("POST", c.public_url + "/mdm/v1/checkin", body)
            res = http.post(
                url + "/mdm/v1/checkin",
                content=body,
                headers={"Device-Proof": proof, "Content-Type": "application/json"},
            )
            if res.status_code != 200:
                return res
    assert res is not None
    return res


def decide(
    c: Cluster, url: str, dev: EnrolledDevice, *, http: httpx.Client | None = None
) -> httpx.Response:
    """One posture-API decision for the device at ``url`` (nonce, proof, decision)."""
    auth = {"Authorization": f"Bearer {c.api_token()}"}
    own = http is None
    client = http or httpx.Client(timeout=15)
    try:
        nonce = client.post(url + "/api/v1/nonce", headers=auth)
        if nonce.status_code != 200:
            return nonce
        issued = nonce.json()
        body = {
            "user": USERNAME,
            "client_id": APP_CLIENT,
            "device_id": dev.device_id,
            "device_proof": dev.login_proof(audience=issued["audience"], nonce=issued["nonce"]),
        }
        return client.post(url + "/api/v1/decision", json=body, headers=auth)
    finally:
        if own:
            client.close()


_DEVICE_CONFIG = re.compile(
    r'<script type="application/json" id="device-config"[^>]*>(.*?)</script>'
)


def field_value(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} in:\n{html[:2000]}"
    return match.group(1)


def _local(url: str, location: str) -> str:
    """A gateway redirect, on the instance ``url`` (the issuer may name another instance)."""
    parts = urlsplit(location)
    return url + parts.path + (("?" + parts.query) if parts.query else "")


def _follow(http: httpx.Client, url: str, res: httpx.Response) -> httpx.Response:
    while res.status_code in (302, 303) and not res.headers["Location"].startswith(REDIRECT):
        res = http.get(_local(url, res.headers["Location"]))
    return res


@dataclass
class Login:
    http: httpx.Client
    verifier: str
    device_page: httpx.Response | None = None


def start_login(url: str) -> Login:
    """Authorize and password on ``url``; the login stops at the device page."""
    http = httpx.Client(timeout=15, limits=httpx.Limits(max_keepalive_connections=0))
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    params = {
        "response_type": "code",
        "client_id": APP_CLIENT,
        "redirect_uri": REDIRECT,
        "scope": "openid profile email",
        "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    page = _follow(http, url, http.get(url + "/oauth/authorize", params=params))
    assert page.status_code == 200 and 'name="password"' in page.text, page.text[:2000]
    posted = http.post(
        url + "/login/password",
        data={"csrf_token": field_value(page.text, "csrf_token"), "username": USERNAME,
              "password": PASSWORD},
    )  # fmt: skip
    device_page = _follow(http, url, posted)
    assert device_page.status_code == 200, device_page.text[:2000]
    return Login(http=http, verifier=verifier, device_page=device_page)


def device_step(url: str, login: Login, dev: EnrolledDevice) -> httpx.Response:
    """Post the device's login proof for the device page's nonce; the answer."""
    assert login.device_page is not None
    match = _DEVICE_CONFIG.search(login.device_page.text)
    assert match, login.device_page.text[:2000]
    config = json.loads(match.group(1))
    proof = dev.login_proof(audience=config["aud"], nonce=config["nonce"])
    return login.http.post(
        url + "/login/device",
        data={"csrf_token": field_value(login.device_page.text, "csrf_token"),
              "nonce": config["nonce"], "proof": proof},
    )  # fmt: skip


def login_device_step(url: str, dev: EnrolledDevice) -> httpx.Response:
    """A login on ``url`` up to the device step's answer (200 warn, 303 code, 403 block...)."""
    login = start_login(url)
    try:
        return device_step(url, login, dev)
    finally:
        login.http.close()


def finish_login(url: str, login: Login, answer: httpx.Response) -> dict[str, Any]:
    """From the device step's answer to the token response (the warning accepted if any)."""
    http = login.http
    if answer.status_code == 200 and 'data-outcome="warn"' in answer.text:
        answer = http.post(
            url + "/login/continue",
            data={"csrf_token": field_value(answer.text, "csrf_token"),
                  "ticket": field_value(answer.text, "ticket")},
        )  # fmt: skip
    answer = _follow(http, url, answer)
    assert answer.status_code in (302, 303), f"{answer.status_code}:\n{answer.text[:3000]}"
    callback = answer.headers["Location"]
    assert callback.startswith(REDIRECT + "?"), callback
    code = parse_qs(urlsplit(callback).query)["code"][0]
    res = http.post(
        url + "/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
              "code_verifier": login.verifier},
        auth=(APP_CLIENT, APP_SECRET),
    )  # fmt: skip
    assert res.status_code == 200, res.text
    return dict(res.json())


def oidc_login(url: str, dev: EnrolledDevice) -> dict[str, Any]:
    """A whole code flow on ``url`` from ``dev``; the token response."""
    login = start_login(url)
    try:
        return finish_login(url, login, device_step(url, login, dev))
    finally:
        login.http.close()


def refresh(url: str, refresh_token: str) -> httpx.Response:
    return httpx.post(
        url + "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(APP_CLIENT, APP_SECRET),
        timeout=15,
    )


def introspect(url: str, token: str) -> httpx.Response:
    return httpx.post(
        url + "/oauth/introspect", data={"token": token}, auth=(APP_CLIENT, APP_SECRET), timeout=15
    )
