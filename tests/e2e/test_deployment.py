"""The product as it ships: real commands with their default flags, a real browser and an
independent relying party, on the embedded default and on PostgreSQL + Redis (issue 7,
finding 3).

Per backend (:func:`tests.e2e.deployment.deployment`): ``posture --config FILE serve`` (granian,
2 workers, no secret key configured), ``posture enroll token``, ``posture agent enroll``,
``posture agent checkin`` and ``posture agent serve-loopback`` (posture snapshot on). Then:

- ten logins in a row, each a full authorization code flow that npm ``openid-client``
  completes and validates (ID token signature via the JWKS, iss, aud, nonce, state; ``jose``
  checks it again): the first in Debian's Chromium, whose device-check page fetches the proof
  from the helper by itself, the others by an HTTP client doing the page's form posts with
  no connection reuse (so the two workers share each login);
- the device is made unhealthy (its root file system is no longer on dm-crypt): the next
  login in Chromium ends on the remediation page, no code is issued, the RP is never called.

Before the fixes of issue 7 this failed three ways: the workers did not get ``--config``, a
login started on one worker was ``login_expired`` on the other (a session key per process),
and the agent's snapshot was misread, blocking the healthy device ("The device agent is
missing", "Storage encryption is off or not reported").
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import _fresh_postgres_db
from tests.e2e.chromium import chromium
from tests.e2e.deployment import (
    Deployment,
    deployment,
    http_login,
)
from tests.e2e.login_stack import CLIENT_ID, CLIENT_SECRET, USER_ID
from tests.e2e.node_rp import NodeRelyingParty
from tests.e2e.test_browser_login import _debug, _sign_in, _wait_landed

__all__: list[str] = []

pytestmark = [pytest.mark.browser, pytest.mark.peer, pytest.mark.slow]

SCOPE = "openid profile email"
LOGINS = 10


@pytest.fixture
def rp() -> Iterator[NodeRelyingParty]:
    with NodeRelyingParty(client_id=CLIENT_ID, secret=CLIENT_SECRET, scope=SCOPE) as party:
        yield party


@pytest.fixture(
    params=[
        "embedded",
        pytest.param("postgres+redis", marks=[pytest.mark.postgres, pytest.mark.redis]),
    ]
)
def backend(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "embedded":
        return {}  # SQLite in the data directory, in-process bus and caches
    return {
        "database_url": _fresh_postgres_db(request.getfixturevalue("postgres_server_url")),
        "redis_url": request.getfixturevalue("redis_url"),
    }


def _check_claims(dep: Deployment, result: dict[str, object], outcome: str) -> None:
    assert result["ok"] is True, result
    claims = result["id_token_claims"]
    assert isinstance(claims, dict)
    assert claims["iss"] == dep.url and claims["aud"] == CLIENT_ID and claims["sub"] == USER_ID
    assert claims["device_id"] == dep.device_id  # only the helper holds the device key
    assert claims["posture_outcome"] == outcome
    assert claims["acr"] == "urn:posture-gateway:acr:managed-device"


def test_ten_logins_in_a_row_then_an_unhealthy_device_is_stopped(
    tmp_path: Path, rp: NodeRelyingParty, backend: dict[str, str]
) -> None:
    with deployment(tmp_path, rp, backend) as dep:
        key_file = tmp_path / "server" / "secret-key"
        assert key_file.stat().st_mode & 0o777 == 0o600  # generated once, shared

        outcomes: list[str] = []
        with chromium(tmp_path / "profile") as browser:
            # 1: the real browser; the page's own script asks the helper for the proof.
            _sign_in(browser, rp.authorization_url(dep.url))
            _wait_landed(browser)
            outcome = "allow"
            if browser.find_elements(By.CSS_SELECTOR, "[data-outcome=warn]"):
                outcome = "warn"  # the shipped policies warn a headless host (no screen lock)
                browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
                WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "rp-result"))
            assert browser.current_url.startswith(rp.redirect_uri + "?"), (
                _debug(browser) + dep.logs()
            )
            assert browser.find_element(By.ID, "rp-result").text == f"Signed in as {USER_ID}"
            _check_claims(dep, rp.result(), outcome)
            outcomes.append(outcome)

            # 2-10: the same form posts, each request on a fresh connection.
            for n in range(2, LOGINS + 1):
                try:
                    result, outcome = http_login(dep, rp)
                except AssertionError as exc:
                    raise AssertionError(
                        f"login {n} of {LOGINS} failed: {exc}\n{dep.logs()}"
                    ) from exc
                _check_claims(dep, result, outcome)
                outcomes.append(outcome)
            assert len(outcomes) == LOGINS and set(outcomes) <= {"allow", "warn"}

            decisions = dep.decisions()
            assert [d.outcome for d in decisions[:LOGINS]] == outcomes[::-1]
            # Every login was decided on the helper's fresh signed snapshot.
            assert {d.detail.get("snapshot") for d in decisions[:LOGINS]} == {"used"}

            # The device is made unhealthy: the next snapshot reports encryption off.
            dep.host.set_encrypted(False)
            codes_before = dep.codes_issued()
            # The browser is inside its SSO session (login 1): no password is asked, but the
            # device is checked again (zero tolerance) and now fails.
            browser.get(rp.authorization_url(dep.url))
            _wait_landed(browser)
            assert not browser.find_elements(By.ID, "password"), _debug(browser)
            assert browser.find_elements(By.CSS_SELECTOR, "[data-outcome=block]"), _debug(browser)
            assert browser.current_url == dep.url + "/login/device", _debug(browser)
            # each failed check is shown with its own fix (the remediation page's pairs)
            checks = {
                r.get_attribute("data-policy"): r.text
                for r in browser.find_elements(By.CSS_SELECTOR, "ul.checks li")
                if r.is_displayed()
            }
            shown = " ".join(checks.values()).lower()
            assert "encryption" in shown, shown
            assert "full-disk encryption" in shown, shown
        blocked = dep.decisions()[0]
        assert blocked.outcome == "block" and blocked.detail.get("snapshot") == "used"
        assert "baseline-critical/storage-encrypted" in blocked.detail["rules"]
        assert dep.codes_issued() == codes_before  # no code for the unhealthy device
        assert rp.stop() == LOGINS  # the RP's callback was hit by the ten logins only
