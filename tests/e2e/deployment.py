"""A deployment as it ships, every part a real command run as a subprocess.

:func:`deployment` writes one YAML config file (SQLite in a data directory, or a PostgreSQL
URL and a Redis URL) and runs, with their default flags:

- ``posture --config FILE serve --port P``: the default server (granian) with the default
  worker count (2), no ``secret_key`` configured;
- ``posture --config FILE enroll token ...``: the admin creates an enrollment token;
- ``posture agent enroll``, ``posture agent checkin``: the reference agent enrolls this "host"
  and checks in over HTTP;
- ``posture agent serve-loopback``: the login helper, posture snapshot on (its default).

The agent reads a fixture host (``posture agent --host-root``, :class:`FixtureHost`): a
``/proc`` and ``/sys`` tree where ``/`` sits on dm-crypt, which the test can flip to a plain
device (encryption off) while everything runs. The user is put into the directory mirror the
way a directory sync does, through the MDM core on the same database.

:func:`http_login` does what the login page does, with an HTTP client and no connection reuse
(each request may reach either worker, as behind a load balancer): authorize, password, device
check (the proof fetched from the real helper with the page's Origin), the warning notice if
the shipped policies warn, and the redirect to the relying party.
"""

from __future__ import annotations

import json
import os
import re
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
from urllib.parse import urljoin

import httpx
from sqlalchemy import func, select

from mdm_core.runtime import MdmCore, build_core
from mdm_core.storage.directory import DirectoryUser
from posture_gateway.app import core_config
from posture_gateway.oidc.tables import oidc_codes
from posture_gateway.settings import load_settings
from tests.e2e.live_server import POLICY_DIR
from tests.e2e.login_stack import PASSWORD, USER_ID, USERNAME, _write_files
from tests.e2e.node_rp import NodeRelyingParty
from tests.services import free_port

__all__ = ["Deployment", "FixtureHost", "deployment", "http_login"]

ROOT = Path(__file__).resolve().parents[2]
POSTURE = [sys.executable, "-m", "posture_gateway.cli.main"]
_ROOT_DEV = "253:7"  # the device / is mounted from in the fixture host


class FixtureHost:
    """A Linux host's ``/etc``, ``/proc`` and ``/sys`` as the agent's collector reads them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "etc").mkdir(parents=True)
        (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n', encoding="utf-8")
        (root / "proc/self").mkdir(parents=True)
        (root / "proc/sys/kernel").mkdir(parents=True)
        (root / "proc/sys/kernel/osrelease").write_text("6.1.0-27-amd64\n", encoding="utf-8")
        (root / "proc/self/mountinfo").write_text(
            f"22 1 0:21 / /proc rw - proc proc rw\n27 1 {_ROOT_DEV} / / rw - ext4 /dev/dm-7 rw\n",
            encoding="utf-8",
        )
        (root / f"sys/dev/block/{_ROOT_DEV}/dm").mkdir(parents=True)
        (root / "sys/firmware").mkdir(parents=True)  # booted without UEFI
        self.set_encrypted(True)

    def set_encrypted(self, encrypted: bool) -> None:
        """``/`` on dm-crypt (LUKS), or on a plain device-mapper volume."""
        uuid = "CRYPT-LUKS2-0123456789abcdef-root" if encrypted else "LVM-0123456789abcdef"
        (self.root / f"sys/dev/block/{_ROOT_DEV}/dm/uuid").write_text(uuid + "\n")


@dataclass
class _Process:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Deployment:
    url: str
    config: Path
    helper_port: int
    host: FixtureHost
    env: dict[str, str]
    device_id: str
    tmp: Path
    processes: list[_Process] = field(default_factory=list)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.output()[-4000:]}" for p in self.processes)

    def core(self) -> MdmCore:
        """The MDM core on the deployment's database (what a directory sync or admin uses)."""
        settings = load_settings(self.config, environ={})
        return build_core(core_config(settings))

    def decisions(self) -> list[Any]:
        core = self.core()
        try:
            with core.storage.unit_of_work() as uow:
                entries = uow.audit.recent(self.device_id, limit=100)
            return [e for e in entries if e.action == "access.decision"]
        finally:
            core.close()

    def codes_issued(self) -> int:
        core = self.core()
        try:
            with core.database.engine.connect() as conn:
                query = select(func.count()).select_from(oidc_codes)
                return int(conn.execute(query).scalar_one())
        finally:
            core.close()


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTURE_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra or {})
    return env


def _run(args: list[str], env: dict[str, str], timeout: float = 60) -> str:
    done = subprocess.run(
        [*POSTURE, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"posture {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _start(name: str, args: list[str], env: dict[str, str], tmp: Path) -> _Process:
    log = tmp / f"{name}.log"
    out: IO[bytes]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*POSTURE, *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the server's workers end with it
        )
    return _Process(name, proc, log)


def _stop(process: _Process) -> None:
    if process.proc.poll() is None:
        os.killpg(process.proc.pid, signal.SIGTERM)
        try:
            process.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.proc.pid, signal.SIGKILL)
            process.proc.wait(timeout=10)


def _wait_until(check: Any, what: str, process: _Process, timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.proc.poll() is None, f"{process.name} exited:\n{process.output()}"
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} not ready in {timeout} s:\n{process.output()}")


def _write_config(
    tmp: Path,
    url: str,
    helper_port: int,
    redirect_uri: str,
    backend: dict[str, str],
    extra_lines: tuple[str, ...] = (),
    policy_dir: Path = POLICY_DIR,
) -> Path:
    clients, users = _write_files(tmp, redirect_uri)
    config = tmp / "posture.yaml"
    lines = [
        f"data_dir: {tmp / 'server'}",
        f"public_url: {url}",
        f"policy_dir: {policy_dir}",
        "dev_mode: true",
        *(f"{key}: {value}" for key, value in backend.items()),
        "oidc:",
        f"  clients_file: {clients}",
        f"  users_file: {users}",
        f"  agent_port: {helper_port}",
        *extra_lines,
    ]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config


@contextmanager
def deployment(
    tmp: Path,
    rp: NodeRelyingParty | None,
    backend: dict[str, str],
    extra_config: tuple[str, ...] = (),
    policy_dir: Path = POLICY_DIR,
) -> Iterator[Deployment]:
    """The whole deployment on ephemeral ports; ``backend`` adds ``database_url`` and
    ``redis_url`` to the config file (empty: the embedded default); ``extra_config`` adds
    top-level YAML lines (a ``saml:`` section); ``policy_dir`` replaces the shipped
    policies. Without ``rp`` the clients file names a redirect URI nobody serves."""
    port, helper_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    redirect_uri = rp.redirect_uri if rp is not None else "http://127.0.0.1:9/unused"
    config = _write_config(tmp, url, helper_port, redirect_uri, backend, extra_config, policy_dir)
    host = FixtureHost(tmp / "host")
    env = _env()
    agent_env = _env({"POSTURE_AGENT_HOST_ROOT": str(host.root)})
    state_dir = tmp / "agent-state"
    processes: list[_Process] = []
    try:
        server = _start(
            "posture serve", ["--config", str(config), "serve", "--port", str(port)], env, tmp
        )
        processes.append(server)

        def ready() -> bool:
            return httpx.get(url + "/readyz", timeout=2).status_code == 200

        _wait_until(ready, "posture serve", server)
        assert "with granian (2 workers)" in server.output(), server.output()
        # The user comes from the directory (as a sync would write it).
        core = build_core(core_config(load_settings(config, environ={})))
        try:
            core.directory.upsert_user(
                DirectoryUser(
                    id=USER_ID,
                    username=USERNAME,
                    active=True,
                    source="local",
                    updated_at=datetime.now(UTC),
                )
            )
        finally:
            core.close()
        token_args = ["--config", str(config), "enroll", "token", "--user", USER_ID]
        token_args += ["--ownership", "corporate", "--platform", "linux"]
        token = _run(token_args, env).strip().splitlines()[-1]
        agent = ["agent", "enroll", "--state-dir", str(state_dir), "--server", url]
        enrolled = _run([*agent, "--token", token, "--ownership", "corporate"], agent_env)
        match = re.search(r"enrolled as device (\S+)", enrolled)
        assert match, enrolled
        device_id = match.group(1)
        _run(["agent", "checkin", "--state-dir", str(state_dir)], agent_env)
        helper = _start(
            "posture agent serve-loopback",
            ["agent", "serve-loopback", "--state-dir", str(state_dir), "--gateway-origin", url]
            + ["--port", str(helper_port)],
            agent_env,
            tmp,
        )
        processes.append(helper)

        def helper_up() -> bool:
            answer = httpx.get(
                f"http://127.0.0.1:{helper_port}/v1/login-proof", headers={"Origin": url}
            )
            return answer.status_code == 400  # up, and it wants a nonce

        _wait_until(helper_up, "the login helper", helper)
        yield Deployment(
            url=url,
            config=config,
            helper_port=helper_port,
            host=host,
            env=env,
            device_id=device_id,
            tmp=tmp,
            processes=processes,
        )
    finally:
        for process in reversed(processes):
            _stop(process)


# ---- the login page's steps, over HTTP ------------------------------------------------------

_DEVICE_CONFIG = re.compile(
    r'<script type="application/json" id="device-config"[^>]*>(.*?)</script>'
)


def _field(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} in:\n{html[:2000]}"
    return match.group(1)


def _follow(http: httpx.Client, response: httpx.Response, stop_at: str) -> httpx.Response:
    """Follow redirects on the gateway until one leads to ``stop_at`` (not fetched)."""
    while response.status_code in (302, 303) and not response.headers["Location"].startswith(
        stop_at
    ):
        response = http.get(urljoin(str(response.url), response.headers["Location"]))
    return response


def http_login(dep: Deployment, rp: NodeRelyingParty) -> tuple[dict[str, Any], str]:
    """One complete code flow driven like the login page; returns (RP result, outcome)."""
    authorization_url = rp.authorization_url(dep.url)
    # No connection reuse: every request may land on either worker.
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(timeout=15, limits=limits) as http:
        page = _follow(http, http.get(authorization_url), rp.redirect_uri)
        assert page.status_code == 200 and 'name="password"' in page.text, page.text[:2000]
        posted = http.post(
            dep.url + "/login/password",
            data={"csrf_token": _field(page.text, "csrf_token"), "username": USERNAME,
                  "password": PASSWORD},
        )  # fmt: skip
        device_page = _follow(http, posted, rp.redirect_uri)
        assert device_page.status_code == 200, device_page.text[:2000]
        config_match = _DEVICE_CONFIG.search(device_page.text)
        assert config_match, device_page.text[:2000]
        config = json.loads(config_match.group(1))
        assert config["port"] == dep.helper_port
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
        outcome = "allow"
        if answer.status_code == 200 and 'data-outcome="warn"' in answer.text:
            outcome = "warn"
            answer = http.post(
                dep.url + "/login/continue",
                data={"csrf_token": _field(answer.text, "csrf_token"),
                      "ticket": _field(answer.text, "ticket")},
            )  # fmt: skip
        answer = _follow(http, answer, rp.redirect_uri)
        assert answer.status_code in (302, 303), f"{answer.status_code}:\n{answer.text[:3000]}"
        callback = answer.headers["Location"]
        assert callback.startswith(rp.redirect_uri + "?"), callback
        landed = http.get(callback)
        assert landed.status_code == 200, landed.text
    return rp.result(), outcome
