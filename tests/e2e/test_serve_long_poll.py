"""Long-polls cannot freeze the server (issue 7, finding 6), against ``posture serve`` as it ships.

The server runs as a subprocess with its default flags (granian, 2 workers, the default
request threads per worker): the claim is about that server's thread pool, which an
in-process werkzeug server does not have. 100 long-polls are opened at once — 60 from one
device and 40 from nine others — and while they are open a local password login (authorize,
login page, password) and a check-in must each answer normally within a few seconds. Only a
bounded number of waits is ever held (at most ``max_waits`` per worker); the others answer at
once, superseded or refused with 503 + Retry-After. The only setting changed is the longest
wait (10 s instead of 25 s), to keep the test short.

"Normally" is asserted by order, not by a stopwatch (a slow machine must not fail it): every
login, check-in and non-held answer must come back before the first held wait ends. A server
whose threads the waits starved could answer them only after that.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mdm_core.runtime import build_core
from posture_gateway.app import core_config
from posture_gateway.oidc.passwords import hash_client_secret, hash_password
from posture_gateway.settings import load_settings
from tests.e2e.cluster import all_workers_started
from tests.helpers.enrolled import EnrolledDevice, enroll_device
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]
POSTURE = [sys.executable, "-m", "posture_gateway.cli.main"]
WORKERS = 2  # posture serve's default
MAX_WAITS = 2  # long_poll.max_waits default
MAX_WAIT_S = 10
CLIENT_ID = "wait-app"
REDIRECT_URI = "http://127.0.0.1:9/cb"
PASSWORD = "wait-test-password-1"


@dataclass
class Served:
    url: str
    devices: list[EnrolledDevice]
    log: Path


def _files(tmp_path: Path) -> tuple[Path, Path]:
    clients = tmp_path / "clients.yaml"
    clients.write_text(
        f"""
clients:
  - client_id: {CLIENT_ID}
    name: Wait App
    client_secret_hash: "{hash_client_secret("w" * 40)}"
    redirect_uris: ["{REDIRECT_URI}"]
    scopes: [openid, profile]
    grant_types: [authorization_code]
""",
        encoding="utf-8",
    )
    users = tmp_path / "users.yaml"
    users.write_text(
        f"""
users:
  - username: alice
    user_id: u-alice
    password_hash: "{hash_password(PASSWORD, n=2**10)}"
""",
        encoding="utf-8",
    )
    return clients, users


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    clients, users = _files(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTURE_")}
    env.update(
        POSTURE_DATA_DIR=str(tmp_path / "data"),
        POSTURE_DEV_MODE="true",
        POSTURE_PUBLIC_URL=url,
        POSTURE_POLICY_DIR=str(ROOT / "policies"),
        POSTURE_OIDC__CLIENTS_FILE=str(clients),
        POSTURE_OIDC__USERS_FILE=str(users),
        # Sessions must verify in both workers (issue 7 finding 2 is fixed elsewhere).
        POSTURE_SECRET_KEY="s" * 64,
        POSTURE_LONG_POLL__MAX_WAIT_S=str(MAX_WAIT_S),
    )
    # Enroll the devices on the server's own database and CA before it starts.
    core = build_core(core_config(load_settings(environ=env)))
    try:
        devices = [enroll_device(core, f"user-{i}") for i in range(10)]
    finally:
        core.close()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*POSTURE, "serve", "--port", str(port)],  # default workers, threads and server
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 40
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text("utf-8")
            try:
                ready = httpx.get(f"{url}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                ready = False
            # Both workers: a crowd sent while one still boots waits in its accept queue.
            if ready and all_workers_started(log.read_text("utf-8")):
                break
            time.sleep(0.2)
        yield Served(url=url, devices=devices, log=log)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _wait(served: Served, device: EnrolledDevice) -> tuple[int, dict[str, Any], float, str]:
    """One long-poll: (status, body, monotonic time it ended, Retry-After)."""
    path = "/mdm/v1/commands/wait"
    proof = device.request_proof("GET", served.url + path, b"")
    resp = httpx.get(
        f"{served.url}{path}?timeout=60",
        headers={"Device-Proof": proof},
        timeout=MAX_WAIT_S + 60,
    )
    return resp.status_code, resp.json(), time.monotonic(), resp.headers.get("Retry-After", "")


def _ended(fn: Any) -> float:
    """Run ``fn``; the monotonic time it ended."""
    fn()
    return time.monotonic()


def _login(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=10) as http:
        authorize = http.get(
            "/oauth/authorize",
            params={
                "client_id": CLIENT_ID,
                "redirect_uri": REDIRECT_URI,
                "response_type": "code",
                "scope": "openid",
                "state": "st",
                "nonce": "n0",
                "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                "code_challenge_method": "S256",
            },
        )
        assert authorize.status_code == 303, authorize.text
        page = http.get("/login")
        assert page.status_code == 200, page.text
        match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert match is not None
        done = http.post(
            "/login/password",
            data={"username": "alice", "password": PASSWORD, "csrf_token": match.group(1)},
        )
        assert done.status_code == 303 and done.headers["location"].endswith("/login/device")


def _check_in(served: Served, device: EnrolledDevice) -> None:
    endpoint = served.url + "/mdm/v1/checkin"
    body = json.dumps({"format": "agent", "report": {"os_version": "12"}}).encode()
    resp = httpx.post(
        endpoint,
        content=body,
        headers={
            "Device-Proof": device.request_proof("POST", endpoint, body),
            "Content-Type": "application/json",
        },
        timeout=10,
    )
    assert resp.status_code == 200, resp.text


def test_a_hundred_waits_do_not_starve_logins_or_checkins(served: Served) -> None:
    crowd = [served.devices[0]] * 60 + [d for d in served.devices[1:9] for _ in range(5)]
    assert len(crowd) == 100
    results: list[tuple[int, dict[str, Any], float, str]] = []
    lock = threading.Lock()

    def one(device: EnrolledDevice) -> None:
        outcome = _wait(served, device)
        with lock:
            results.append(outcome)

    with ThreadPoolExecutor(max_workers=100) as pool:
        futures = [pool.submit(one, d) for d in crowd]
        time.sleep(1.0)  # the crowd is in
        # three logins and three check-ins side by side (a slow machine adds, it does not
        # multiply), each timed by when it ended
        with ThreadPoolExecutor(max_workers=6) as others:
            asked = [others.submit(_ended, lambda: _login(served)) for _ in range(3)] + [
                others.submit(_ended, lambda: _check_in(served, served.devices[9]))
                for _ in range(3)
            ]
            ends = [
                (name, f.result())
                for name, f in zip(["login"] * 3 + ["checkin"] * 3, asked, strict=True)
            ]
        for future in futures:
            future.result()

    assert len(results) == 100
    held = [r for r in results if r[0] == 200 and r[1]["ended"] == "timeout"]
    superseded = [r for r in results if r[0] == 200 and r[1]["ended"] == "superseded"]
    refused = [r for r in results if r[0] == 503]
    assert len(held) + len(superseded) + len(refused) == 100, results
    # At most max_waits per worker were ever held; everything else answered at once.
    assert len(held) <= WORKERS * MAX_WAITS
    assert all(r[1]["timeout_s"] == MAX_WAIT_S for r in held)
    assert held and superseded and refused
    # Not starved: the logins and check-ins, and every wait that was not held, answered
    # before the first held wait ended (at its timeout): while the waits held their threads.
    first_held_end = min(ended for _, _, ended, _ in held)
    late = [(name, ended - first_held_end) for name, ended in ends if ended >= first_held_end]
    assert not late, (late, served.log.read_text("utf-8")[-3000:])
    assert all(ended < first_held_end for _, _, ended, _ in superseded + refused)
    assert all(r[1]["error"] == "long_poll_unavailable" and int(r[3]) > 0 for r in refused)


def test_serve_refuses_long_polls_over_half_the_threads(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTURE_")}
    env.update(POSTURE_DATA_DIR=str(tmp_path / "data"), POSTURE_DEV_MODE="true")
    refused = subprocess.run(
        [*POSTURE, "serve", "--port", str(free_port()), "--threads", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "long_poll.max_waits=2" in refused.stderr and "--threads" in refused.stderr
