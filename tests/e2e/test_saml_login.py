"""SAML sign-in as it ships: a real browser, a real ``posture serve``, the real agent and an
independent SP (npm @node-saml/node-saml), on the embedded default and on PostgreSQL + Redis.

Per backend (:func:`tests.e2e.deployment.deployment`: ``posture --config FILE serve`` with its
default flags — granian, 2 workers —, ``posture agent enroll|checkin|serve-loopback``) with a
``saml:`` section naming the node-saml SPs by their metadata files:

- SP-initiated: node-saml builds the AuthnRequest (HTTP-Redirect); Chromium follows it, the
  test types the password, the device-check page gets the proof from the agent's loopback
  helper by itself, and the auto-submitted Response lands on node-saml's ACS, which validates
  it (our certificate from ``/saml/metadata``, audience, Recipient, InResponseTo). The device
  is then made unhealthy: the next login ends on the remediation page, the SP gets nothing;
- IdP-initiated (``/saml/idp-initiated``) for the SP that allows it;
- Okta "factor only": a signed AuthnRequest with the user as Subject NameID (built and
  signed by the test, as Okta does): no password page, the device check, and a Response for
  the SAME NameID.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import _fresh_postgres_db
from tests.e2e.chromium import chromium
from tests.e2e.deployment import Deployment, _run, deployment
from tests.e2e.login_stack import PASSWORD, USERNAME
from tests.e2e.saml_login import (
    authn_request_xml,
    idp_certificate_pem,
    redirect_url,
    saml_config_lines,
)
from tests.e2e.saml_sp import NodeSamlSp, SpKey, sp_metadata_xml

__all__: list[str] = []

pytestmark = [pytest.mark.browser, pytest.mark.peer, pytest.mark.slow]

SP_ID = "urn:test:e2e-node-saml-sp"
OKTA_ID = "https://www.okta.com/saml2/service-provider/spe2e000000000000"
_LANDED = "#sp-result, [data-outcome], [data-error]"


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


@dataclass
class SamlDeployment:
    dep: Deployment
    sp: NodeSamlSp
    okta: NodeSamlSp
    okta_key: SpKey

    @property
    def sso(self) -> str:
        return self.dep.url + "/saml/sso"


@pytest.fixture
def saml_dep(tmp_path: Path, backend: dict[str, str]) -> Iterator[SamlDeployment]:
    okta_key = SpKey.generate("okta")
    with NodeSamlSp(entity_id=SP_ID) as sp, NodeSamlSp(entity_id=OKTA_ID) as okta:
        sp_file = tmp_path / "sp-metadata.xml"
        sp_file.write_text(sp.metadata(), encoding="utf-8")
        okta_file = tmp_path / "okta-metadata.xml"
        okta_file.write_text(
            sp_metadata_xml(OKTA_ID, okta.acs_url, signing=okta_key, authn_requests_signed=True),
            encoding="utf-8",
        )
        unspecified = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
        lines = saml_config_lines(
            [
                {
                    "metadata_file": str(sp_file),
                    "name": "Node SP",
                    "allow_idp_initiated": True,
                    "nameid_attribute": "username",
                    "nameid_format": unspecified,
                },
                {
                    "metadata_file": str(okta_file),
                    "name": "Okta",
                    "okta_factor": True,
                    "require_signed_requests": True,
                    "linking": {"link_by": "username"},
                },
            ]
        )
        with deployment(tmp_path, None, backend, extra_config=lines) as dep:
            cert = idp_certificate_pem(dep.url)
            entity = dep.url + "/saml/metadata"
            sp.configure(
                idp_cert=cert,
                sso_url=dep.url + "/saml/sso",
                idp_entity_id=entity,
                in_response_to="ifPresent",  # IdP-initiated too; SP-initiated ones are checked
            )
            okta.configure(
                idp_cert=cert,
                sso_url=dep.url + "/saml/sso",
                idp_entity_id=entity,
                in_response_to="never",
            )
            yield SamlDeployment(dep, sp, okta, okta_key)


def _debug(browser: webdriver.Chrome, dep: Deployment | None = None) -> str:
    logs = dep.logs() if dep is not None else ""
    return f"at {browser.current_url}:\n{browser.page_source[:3000]}\n{logs}"


def _landed(browser: webdriver.Chrome, timeout: float = 30) -> None:
    WebDriverWait(browser, timeout).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, _LANDED),
        message="the SAML sign-in never finished",
    )


def _finish(browser: webdriver.Chrome) -> str:
    """Wait for the end of the device check; continue after a warning. Returns the outcome
    the pages showed (``allow`` when none: the Response went straight to the SP)."""
    _landed(browser)
    if browser.find_elements(By.CSS_SELECTOR, "[data-outcome=warn]"):
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.ID, "sp-result"))
        return "warn"
    if browser.find_elements(By.CSS_SELECTOR, "[data-outcome=block]"):
        return "block"
    return "allow"


def _password(browser: webdriver.Chrome) -> None:
    WebDriverWait(browser, 15).until(lambda d: d.find_elements(By.ID, "password"))
    browser.find_element(By.ID, "username").send_keys(USERNAME)
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()


def _check_in(dep: Deployment) -> None:
    agent_env = {**dep.env, "POSTURE_AGENT_HOST_ROOT": str(dep.host.root)}
    _run(["agent", "checkin", "--state-dir", str(dep.tmp / "agent-state")], agent_env)


def test_sp_initiated_login_in_chromium_then_a_failing_device_gets_no_assertion(
    tmp_path: Path, saml_dep: SamlDeployment
) -> None:
    dep, sp = saml_dep.dep, saml_dep.sp
    with chromium(tmp_path / "profile") as browser:
        login = sp.login(relay_state="/inbox?folder=1&x=<y>")
        browser.get(login["url"])
        assert "/login" in browser.current_url, _debug(browser, dep)
        _password(browser)
        outcome = _finish(browser)
        assert outcome in ("allow", "warn"), _debug(browser, dep)
        WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.ID, "sp-result"))
        assert browser.current_url == sp.acs_url, _debug(browser, dep)
        assert browser.find_element(By.ID, "sp-result").text == f"Signed in as {USERNAME}"
        result = sp.acs_result()
        assert result["ok"] is True, result
        profile = result["profile"]
        assert profile["inResponseTo"] == login["request_id"]
        assert profile["device_id"] == dep.device_id  # only the agent holds the device key
        assert profile["posture_outcome"] == outcome
        assert result["relay_state"] == "/inbox?folder=1&x=<y>"
        decisions = dep.decisions()
        assert decisions[0].outcome == outcome

        # Inside the SSO session (Chromium's own SameSite=Lax cookie): no password page, the
        # device proven again, the SessionIndex the same session's.
        again = sp.login()
        browser.get(again["url"])
        assert _finish(browser) in ("allow", "warn"), _debug(browser, dep)
        WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.ID, "sp-result"))
        second = sp.acs_result()
        assert second["ok"] is True, second
        assert second["profile"]["inResponseTo"] == again["request_id"]
        assert second["profile"]["sessionIndex"] == profile["sessionIndex"]
        assert len(dep.decisions()) == len(decisions) + 1

        # The device is made unhealthy (a posture block, which ends the session): the agent's
        # next snapshot reports encryption off.
        dep.host.set_encrypted(False)
        _check_in(dep)
        browser.get(sp.login()["url"])
        _password(browser)
        assert _finish(browser) == "block", _debug(browser, dep)
        assert browser.current_url == dep.url + "/login/device", _debug(browser, dep)
        shown = " ".join(
            r.text
            for r in browser.find_elements(By.CSS_SELECTOR, "ul.checks li")
            if r.is_displayed()
        ).lower()
        assert "encryption" in shown, shown
        assert "SAMLResponse" not in browser.page_source
    assert dep.decisions()[0].outcome == "block"
    assert sp.stop() == 2  # the ACS got the two allowed logins only


def test_idp_initiated_and_okta_factor_only_in_chromium(
    tmp_path: Path, saml_dep: SamlDeployment
) -> None:
    dep, sp, okta = saml_dep.dep, saml_dep.sp, saml_dep.okta
    with chromium(tmp_path / "profile") as browser:
        browser.get(f"{dep.url}/saml/idp-initiated?sp={quote(SP_ID, safe='')}&RelayState=home")
        _password(browser)
        assert _finish(browser) in ("allow", "warn"), _debug(browser, dep)
        WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.ID, "sp-result"))
        result = sp.acs_result()
        assert result["ok"] is True, result
        assert not result["profile"].get("inResponseTo")
        assert result["relay_state"] == "home"

        # Okta: a signed request naming the user; no password page, the device check only.
        request_id = "_okta" + secrets.token_hex(12)
        xml = authn_request_xml(
            issuer=OKTA_ID,
            destination=saml_dep.sso,
            acs_url=okta.acs_url,
            request_id=request_id,
            subject=USERNAME,
        )
        browser.get(redirect_url(saml_dep.sso, xml, relay_state="okta", key=saml_dep.okta_key))
        outcome = _finish(browser)
        assert outcome in ("allow", "warn"), _debug(browser, dep)
        WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.ID, "sp-result"))
        assert browser.current_url == okta.acs_url
        result = okta.acs_result()
        assert result["ok"] is True, result
        assert result["profile"]["nameID"] == USERNAME  # the same NameID Okta sent
        assert result["profile"]["inResponseTo"] == request_id
        assert result["profile"]["device_id"] == dep.device_id
    decisions = dep.decisions()
    assert decisions[0].outcome == outcome and len(decisions) >= 2
    assert sp.stop() == 1 and okta.stop() == 1
