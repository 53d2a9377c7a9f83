"""Sign-in through a real browser: Chromium, the gateway, the device agent's loopback helper and
an independent relying party, every part real and on its own ephemeral port.

- The relying party is npm ``openid-client`` (tests/peers/node/browser_rp.mjs): it builds the
  authorization URL (code, PKCE S256, nonce, state), serves its redirect URI, exchanges the code
  and validates the ID token (JWKS signature, iss, aud, nonce; ``jose`` checks it again).
- Chromium opens that URL; the test only types the username and password (and presses
  "Continue for now" if the shipped policies warn). The device-check page's own script fetches
  the login proof from the device's :class:`LoopbackHelper` on 127.0.0.1 and submits it; the
  gateway's real device gate decides on the posture the device checked in over HTTP.
- A jailbroken phone ends on the remediation page; no code is issued, the RP is never called.
- A page from another origin asking the helper gets nothing (CORS refusal in the browser).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from mdm_core.agent.keys import DeviceKey as AgentKey
from mdm_core.agent.loopback import LoopbackHelper
from mdm_core.posture.model import Platform
from mdm_core.simulator.reports import DeviceTraits
from tests.e2e.chromium import chromium
from tests.e2e.login_stack import (
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    USER_ID,
    USERNAME,
    login_stack,
)
from tests.e2e.node_rp import NodeRelyingParty

__all__: list[str] = []

pytestmark = [pytest.mark.browser, pytest.mark.peer]

SCOPE = "openid profile email"
_LANDED = "#rp-result, [data-outcome], [data-error]"

#: "Check again": a form button when the device can be asked to check in now, else a link.
CHECK_AGAIN = "//*[self::a or self::button][normalize-space()='Check again']"


def _debug(browser: webdriver.Chrome) -> str:
    return f"at {browser.current_url}:\n{browser.page_source[:3000]}"


def _sign_in(browser: webdriver.Chrome, authorization_url: str) -> None:
    """Open the RP's authorization URL and type the password; the rest runs by itself."""
    browser.get(authorization_url)
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "password"))
    assert "/login" in browser.current_url, _debug(browser)
    browser.find_element(By.ID, "username").send_keys(USERNAME)
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()


def _wait_landed(browser: webdriver.Chrome, timeout: float = 20) -> None:
    """Wait until the device check is over: the RP's page, a notice, a block or an error."""
    WebDriverWait(browser, timeout).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, _LANDED),
        message="the device-check page never finished",
    )


@pytest.fixture
def rp() -> Iterator[NodeRelyingParty]:
    with NodeRelyingParty(client_id=CLIENT_ID, secret=CLIENT_SECRET, scope=SCOPE) as party:
        yield party


def test_healthy_linux_device_signs_in_and_the_rp_gets_posture_claims(
    tmp_path: Path, rp: NodeRelyingParty
) -> None:
    with (
        login_stack(tmp_path, rp.redirect_uri, Platform.LINUX, DeviceTraits()) as stack,
        chromium(tmp_path / "profile") as browser,
    ):
        _sign_in(browser, rp.authorization_url(stack.url))
        _wait_landed(browser)
        warned = bool(browser.find_elements(By.CSS_SELECTOR, "[data-outcome=warn]"))
        if warned:  # the shipped policies may only warn a healthy device (e.g. no screen lock)
            browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
            WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "rp-result"))
        assert browser.current_url.startswith(rp.redirect_uri + "?"), _debug(browser)
        assert browser.find_element(By.ID, "rp-result").text == f"Signed in as {USER_ID}"

        result = rp.result()
        assert result["ok"] is True, result
        claims: dict[str, Any] = result["id_token_claims"]
        assert claims["iss"] == stack.url and claims["aud"] == CLIENT_ID
        assert claims["sub"] == USER_ID
        # Only the loopback helper holds the device key: this claim means the page's own
        # script fetched the proof from it and the gate verified it.
        assert claims["device_id"] == stack.device.device_id
        assert claims["posture_outcome"] == ("warn" if warned else "allow")
        assert claims["acr"] == "urn:posture-gateway:acr:managed-device"
        assert claims["amr"] == ["pwd", "hwk"]
        assert claims["preferred_username"] == USERNAME
        assert result["jose_header"]["alg"] == "RS256" and result["jose_header"]["kid"]
        assert rp.discovery["code_challenge_methods_supported"] == ["S256"]
        assert rp.stop() == 1
        decisions = stack.decisions()
        assert [d.outcome for d in decisions] == [claims["posture_outcome"]]


def test_jailbroken_phone_ends_on_remediation_and_no_code_is_issued(
    tmp_path: Path, rp: NodeRelyingParty
) -> None:
    traits = DeviceTraits(jailbroken=True)
    with (
        login_stack(tmp_path, rp.redirect_uri, Platform.ANDROID, traits) as stack,
        chromium(tmp_path / "profile") as browser,
    ):
        _sign_in(browser, rp.authorization_url(stack.url))
        _wait_landed(browser)
        assert browser.find_elements(By.CSS_SELECTOR, "[data-outcome=block]"), _debug(browser)
        assert browser.current_url == stack.url + "/login/device", _debug(browser)
        reasons = browser.find_elements(By.CSS_SELECTOR, "[data-group] li[data-reason]")
        shown = " ".join(r.text for r in reasons if r.is_displayed()).lower()
        assert "jailbroken or rooted" in shown, shown
        # The jailbreak's own fix sits beside it (what the user can fix).
        fixes = browser.find_elements(By.CSS_SELECTOR, "[data-group=user] li[data-reason] .fix")
        steps = " ".join(f.text for f in fixes).lower()
        assert "factory reset" in steps, steps
        check_again = browser.find_element(By.XPATH, CHECK_AGAIN)
        assert check_again.is_displayed()
        shot = tmp_path / "remediation.png"
        assert browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 0

        # "Check again" runs the whole device check once more (fresh nonce, fresh proof).
        check_again.click()
        WebDriverWait(browser, 20).until(
            lambda d: (
                len(stack.decisions()) == 2
                and d.find_elements(By.CSS_SELECTOR, "[data-outcome=block]")
            )
        )
        assert not browser.current_url.startswith(rp.redirect_uri)
        assert rp.stop() == 0  # the RP's callback was never hit
        assert stack.codes_issued() == 0
        assert [d.outcome for d in stack.decisions()] == ["block", "block"]


# ---- the helper answers the gateway's origin only --------------------------------------------

_PROBE_PAGE = """<!doctype html><title>probe</title><pre id="out"></pre><script>
fetch(%(url)s, {mode: "cors", credentials: "omit", cache: "no-store"})
  .then(function (r) {
    return r.text().then(function (t) { return "status " + r.status + " " + t; });
  })
  .catch(function (e) { return "refused " + e.name; })
  .then(function (text) { document.getElementById("out").textContent = text; });
</script>"""


@contextmanager
def _page_server(render: Callable[[], str]) -> Iterator[str]:
    """Serve ``render()`` at / on an ephemeral 127.0.0.1 port (a web origin of its own)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            body = render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _probe(browser: webdriver.Chrome, page_url: str) -> str:
    browser.get(page_url + "/")
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "out").text)
    return str(browser.find_element(By.ID, "out").text)


def test_loopback_helper_gives_no_proof_to_a_page_from_another_origin(tmp_path: Path) -> None:
    nonce = "n" * 24
    key = AgentKey.generate()
    holder: dict[str, str] = {}

    def page() -> str:
        url = f"{holder['helper']}/v1/login-proof?nonce={nonce}&aud={holder['aud']}/oauth"
        return _PROBE_PAGE % {"url": json.dumps(url)}

    # Two origins serving the same probe page: the one the helper trusts and a stranger.
    with _page_server(page) as trusted, _page_server(page) as stranger:
        helper = LoopbackHelper(key, "dev-probe", trusted).start()
        try:
            holder["helper"], holder["aud"] = helper.url, trusted
            with chromium(tmp_path / "profile") as browser:
                good = _probe(browser, trusted)
                bad = _probe(browser, stranger)
            # A client outside the browser sees what the stranger's page could not read.
            direct = httpx.get(
                f"{helper.url}/v1/login-proof",
                params={"nonce": nonce, "aud": trusted + "/oauth"},
                headers={"Origin": stranger},
            )
        finally:
            helper.stop()

    assert good.startswith("status 200 "), good
    answer = json.loads(good.removeprefix("status 200 "))
    claims = jwt.decode(
        answer["proof"],
        key.private_key.public_key(),
        algorithms=["ES256"],
        audience=trusted + "/oauth",
        options={"require": ["aud", "nonce", "iat", "jti"]},
    )
    assert claims["nonce"] == nonce and answer["device_id"] == "dev-probe"

    assert bad == "refused TypeError", bad  # CORS refusal: no status, no body, no device id
    assert "proof" not in bad and "dev-probe" not in bad
    assert direct.status_code == 403
    assert direct.json()["error"] == "origin_refused"
    assert "Access-Control-Allow-Origin" not in direct.headers
