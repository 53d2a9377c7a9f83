"""Fresh posture on demand (issue 10, item 5): "Check again" lets a fixed device in within
seconds, against the real thing.

Two ``posture serve`` instances on one PostgreSQL + Redis (:mod:`tests.e2e.cluster`), the
shipped policies plus one rule that blocks at once (no grace, no quarantine): Linux older
than Debian 12. The reference agent runs as it ships: ``posture agent enroll`` with an
enrollment token from ``posture enroll token``, ``posture agent run`` (check in, then
long-poll instance A), ``posture agent serve-loopback`` (the login helper, posture snapshot
off so the decision rests on the STORED posture, which only a check-in changes).

The host reports Debian 11: a login on instance B is blocked; the remediation page offers
"Check again" (a form). The host is upgraded (the agent's posture source changes). "Check
again" on B asks the device to check in now — the request travels on the Redis bus to A,
which holds the agent's long-poll; the agent checks in at once (its periodic check-in is 15
minutes away); the status endpoint turns ``fresh``; the device step runs again and the login
is allowed. The request is audited with the user as actor.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mdm_core.device.checkin_now import AUDIT_ACTION
from tests.e2e.cluster import (
    USER_ID,
    Cluster,
    cluster,
    field_value,
    finish_login,
    start_login,
)
from tests.e2e.deployment import FixtureHost, _env, _Process, _run, _start, _stop
from tests.e2e.live_server import POLICY_DIR
from tests.services import _wait_port, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

OLD_OS_RULE = """
---
kind: CompliancePolicy
id: test-linux-current
description: Debian 12 or newer (blocks at once, no grace).
assign: {}
rules:
  - id: linux-12
    severity: high
    platforms: [linux]
    min_os_version: {linux: "12"}
    remediation: Upgrade to Debian 12.
"""
_DEVICE_CONFIG = re.compile(
    r'<script type="application/json" id="device-config"[^>]*>(.*?)</script>'
)


def _set_release(host: FixtureHost, version: str) -> None:
    (host.root / "etc/os-release").write_text(
        f'ID=debian\nVERSION_ID="{version}"\n', encoding="utf-8"
    )


@dataclass
class Stack:
    c: Cluster
    host: FixtureHost
    helper_port: int
    device_id: str
    agent: _Process
    helper: _Process

    def logs(self) -> str:
        return self.c.logs() + "\n--- agent ---\n" + self.agent.output()[-3000:]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    (policies / "compliance" / "test-linux-current.yaml").write_text(OLD_OS_RULE, "utf-8")
    helper_port = free_port()
    with cluster(tmp_path, policy_dir=policies, agent_port=helper_port) as c:
        host = FixtureHost(tmp_path / "host")
        _set_release(host, "11")
        env = _env()
        agent_env = _env({"POSTURE_AGENT_HOST_ROOT": str(host.root)})
        token_args = ["--config", str(c.config), "enroll", "token", "--user", USER_ID]
        token_args += ["--ownership", "corporate", "--platform", "linux"]
        token = _run(token_args, env).strip().splitlines()[-1]
        state = tmp_path / "agent-state"
        enrolled = _run(
            ["agent", "enroll", "--state-dir", str(state), "--server", c.a, "--token", token,
             "--ownership", "corporate"],
            agent_env,
        )  # fmt: skip
        match = re.search(r"enrolled as device (\S+)", enrolled)
        assert match, enrolled
        agent = _start("posture agent run", ["agent", "run", "--state-dir", str(state)],
                       agent_env, tmp_path)  # fmt: skip
        helper = _start(
            "posture agent serve-loopback",
            ["agent", "serve-loopback", "--state-dir", str(state), "--gateway-origin",
             c.public_url, "--port", str(helper_port), "--no-posture"],
            agent_env,
            tmp_path,
        )  # fmt: skip
        try:
            _wait_port(helper_port)  # the page's script asks the helper at once
            yield Stack(c, host, helper_port, match.group(1), agent, helper)
        finally:
            _stop(helper)
            _stop(agent)


def _eventually(check: object, what: str, stack: Stack, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached in {timeout} s\n{stack.logs()}")


def _checkins(stack: Stack) -> int:
    core = stack.c.core()
    try:
        with core.storage.unit_of_work() as uow:
            return len(uow.posture.history(stack.device_id, limit=100))
    finally:
        core.close()


def _device_step(
    url: str, stack: Stack, page: httpx.Response, http: httpx.Client
) -> httpx.Response:
    """What the device page's script does: the helper's proof for the page's nonce, posted."""
    match = _DEVICE_CONFIG.search(page.text)
    assert match, page.text[:2000]
    config = json.loads(match.group(1))
    assert config["port"] == stack.helper_port
    proof = httpx.get(
        f"http://127.0.0.1:{stack.helper_port}/v1/login-proof",
        params={"nonce": config["nonce"], "aud": config["aud"]},
        headers={"Origin": stack.c.public_url},
        timeout=10,
    )
    assert proof.status_code == 200, proof.text
    return http.post(
        url + "/login/device",
        data={"csrf_token": field_value(page.text, "csrf_token"), "nonce": config["nonce"],
              "proof": proof.json()["proof"]},
    )  # fmt: skip


def test_check_again_lets_a_fixed_device_in_within_seconds(stack: Stack) -> None:
    c, b = stack.c, stack.c.b
    _eventually(lambda: _checkins(stack) >= 1, "the agent's first check-in", stack)
    login = start_login(b)
    http = login.http
    assert login.device_page is not None
    blocked = _device_step(b, stack, login.device_page, http)
    assert blocked.status_code == 403 and 'data-outcome="block"' in blocked.text, blocked.text
    assert 'data-policy="test-linux-current"' in blocked.text
    assert 'action="/login/device/recheck"' in blocked.text  # "Check again" is the form

    time.sleep(1.5)  # the agent is in its long-poll on A by now (it began right after checking in)
    before = _checkins(stack)
    _set_release(stack.host, "12")  # the user upgraded the device
    asked = time.monotonic()
    page = http.post(b + "/login/device/recheck",
                     data={"csrf_token": field_value(blocked.text, "csrf_token")})  # fmt: skip
    assert page.status_code == 200 and "data-recheck" in page.text, page.text[:2000]
    status: dict[str, object] = {}
    while time.monotonic() - asked < 30:  # what the page's script does (bounded by the server)
        status = http.get(b + "/login/device/recheck/status").json()
        if status["done"]:
            break
        time.sleep(0.25)
    assert status == {"fresh": True, "done": True}, f"{status}\n{stack.logs()}"
    waited = time.monotonic() - asked
    assert _checkins(stack) > before  # the agent checked in because it was asked
    device_page = http.get(b + "/login/device")
    answer = _device_step(b, stack, device_page, http)
    tokens = finish_login(b, login, answer)  # allowed (or warned, then allowed)
    assert tokens["access_token"]
    assert waited < 15, waited  # seconds, not the 15-minute periodic check-in
    core = c.core()
    try:
        with core.storage.unit_of_work() as uow:
            entries = [
                e for e in uow.audit.recent(stack.device_id, limit=100) if e.action == AUDIT_ACTION
            ]
    finally:
        core.close()
    assert [(e.actor, e.outcome) for e in entries] == [("user:" + USER_ID, "sent")]
    http.close()


@pytest.mark.browser
def test_check_again_in_a_real_browser(stack: Stack, tmp_path: Path) -> None:
    """The same in headless Chromium: the pages' own scripts ask the helper for the proof,
    post it, and after "Check again" poll the status endpoint (under the page's CSP) and
    return to the device step by themselves."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.e2e.chromium import chromium
    from tests.e2e.cluster import APP_CLIENT, PASSWORD, REDIRECT, USERNAME

    a = stack.c.a  # the helper serves only the gateway's public origin, which is A's
    _eventually(lambda: _checkins(stack) >= 1, "the agent's first check-in", stack)
    params = {
        "response_type": "code", "client_id": APP_CLIENT, "redirect_uri": REDIRECT,
        "scope": "openid", "state": "s1", "nonce": "n1",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
    }  # fmt: skip
    with chromium(tmp_path / "profile") as browser:
        browser.get(str(httpx.URL(a + "/oauth/authorize", params=params)))
        WebDriverWait(browser, 15).until(lambda d: d.find_elements(By.ID, "password"))
        browser.find_element(By.ID, "username").send_keys(USERNAME)
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        WebDriverWait(browser, 30).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "[data-outcome=block]"),
            message="the blocked page never showed",
        )
        time.sleep(1.5)  # the agent is back in its long-poll
        before = _checkins(stack)
        _set_release(stack.host, "12")
        browser.find_element(By.CSS_SELECTOR, "form[data-recheck] button").click()
        WebDriverWait(browser, 40).until(
            lambda d: (
                d.current_url.startswith(REDIRECT)
                or d.find_elements(By.CSS_SELECTOR, "[data-outcome=warn]")
            ),
            message="the page did not come back allowed after Check again",
        )
        assert not browser.find_elements(By.CSS_SELECTOR, "[data-outcome=block]")
    assert _checkins(stack) > before, stack.logs()
    # The page's script did poll (its CSP allows it): the access log of A has the polls.
    assert "GET /login/device/recheck/status 200" in stack.c.instances[0].output(), stack.logs()
