"""The SAML IdP flow against an independent SP (npm @node-saml/node-saml), over HTTP.

The gateway, an enrolled device and its real loopback helper run in-process
(:func:`tests.e2e.login_stack.login_stack`) with a ``saml:`` section naming node-saml SPs by
their metadata files. The test drives the pages as the browser would
(:func:`tests.e2e.saml_login.http_saml_login`) and hands the auto-submitted Response to
node-saml, which checks it with OUR certificate from ``/saml/metadata``, its audience, its
Destination/Recipient and InResponseTo against the request ids it generated itself.

Happy paths: SP-initiated (Redirect, signed and unsigned), IdP-initiated, Okta factor-only
(a signed request with a Subject). Attacks and failure paths: replayed request id, unknown
ACS URL, unsigned / wrongly signed request where signatures are required, IsPassive (no
session: NoPassive; failing device: AuthnFailed, never an assertion), a blocked device gets
the remediation page and no Response at all, RelayState too long refused and escaped when
echoed, CSRF on the login forms, an SP not allowed IdP-initiated logins.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from lxml import etree

from mdm_core.posture.model import Platform
from mdm_core.simulator.reports import DeviceTraits
from tests.e2e.login_stack import USER_ID, USERNAME, Stack, login_stack
from tests.e2e.saml_login import (
    SamlAnswer,
    answer_of,
    authn_request_xml,
    http_saml_login,
    idp_certificate_pem,
    redirect_url,
)
from tests.e2e.saml_sp import NodeSamlSp, SpKey, sp_metadata_xml
from tests.services import free_port

__all__: list[str] = []

pytestmark = [pytest.mark.peer]

SP_ID = "urn:test:node-saml-sp"
SIGNED_SP_ID = "urn:test:node-saml-signed-sp"
OKTA_ID = "https://www.okta.com/saml2/service-provider/sptest0000000000"
_NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
}


@dataclass
class World:
    stack: Stack
    sp: NodeSamlSp  # unsigned requests, IdP-initiated allowed
    signed_sp: NodeSamlSp  # requires signed requests
    okta: NodeSamlSp  # okta_factor; its requests are built and signed by the test
    okta_key: SpKey
    okta_acs: str

    @property
    def sso(self) -> str:
        return self.stack.url + "/saml/sso"

    def client(self) -> httpx.Client:
        return httpx.Client(timeout=15)


def _status(xml: str) -> tuple[str, str | None]:
    root = etree.fromstring(xml.encode())
    codes = root.findall("samlp:Status//samlp:StatusCode", _NS)
    top = codes[0].get("Value", "")
    sub = codes[1].get("Value") if len(codes) > 1 else None
    return top.rsplit(":", 1)[-1], sub.rsplit(":", 1)[-1] if sub else None


def _has_assertion(xml: str) -> bool:
    return b"Assertion" in xml.encode() and (
        etree.fromstring(xml.encode()).find(".//saml:Assertion", _NS) is not None
        or "EncryptedAssertion" in xml
    )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    okta_key = SpKey.generate("okta")
    with (
        NodeSamlSp(entity_id=SP_ID) as sp,
        NodeSamlSp(entity_id=SIGNED_SP_ID, signing=SpKey.generate("signed sp")) as signed_sp,
        NodeSamlSp(entity_id=OKTA_ID) as okta,
    ):
        files = {}
        for name, peer, extra in (
            ("sp", sp, None),
            ("signed", signed_sp, None),
            ("okta", okta, okta_key),
        ):
            path = tmp_path / f"{name}-metadata.xml"
            if extra is None:
                path.write_text(peer.metadata(), encoding="utf-8")
            else:
                path.write_text(
                    sp_metadata_xml(
                        OKTA_ID, okta.acs_url, signing=extra, authn_requests_signed=True
                    ),
                    encoding="utf-8",
                )
            files[name] = str(path)
        saml = {
            "saml": {
                "service_providers": [
                    {
                        "metadata_file": files["sp"],
                        "name": "Node SP",
                        "allow_idp_initiated": True,
                        "nameid_format": "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
                        "nameid_attribute": "username",
                    },
                    {
                        "metadata_file": files["signed"],
                        "require_signed_requests": True,
                        "nameid_attribute": "email",
                    },
                    {
                        "metadata_file": files["okta"],
                        "name": "Okta",
                        "okta_factor": True,
                        "require_signed_requests": True,
                        "linking": {"link_by": "username"},
                    },
                ]
            }
        }
        with login_stack(
            tmp_path, f"http://127.0.0.1:{free_port()}/cb", Platform.LINUX, DeviceTraits(), saml
        ) as stack:
            cert = idp_certificate_pem(stack.url)
            idp_entity = stack.url + "/saml/metadata"
            for peer in (sp, signed_sp):
                peer.configure(
                    idp_cert=cert, sso_url=stack.url + "/saml/sso", idp_entity_id=idp_entity
                )
            # The test builds Okta's requests: node-saml checks signature, audience and
            # Recipient; InResponseTo is checked by the test (node-saml never saw the id).
            okta.configure(
                idp_cert=cert,
                sso_url=stack.url + "/saml/sso",
                idp_entity_id=idp_entity,
                in_response_to="never",
            )
            yield World(stack, sp, signed_sp, okta, okta_key, okta.acs_url)


def _validated(peer: NodeSamlSp, answer: SamlAnswer) -> dict[str, Any]:
    assert answer.action is not None, f"no answer form: {answer.status}\n{answer.text[:2000]}"
    return peer.validate(answer.saml_response, answer.fields.get("RelayState"))


def _attributes(profile: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in profile.items() if k not in ("issuer", "nameID", "nameIDFormat")}


# ---- happy paths -------------------------------------------------------------------------------


def test_sp_initiated_redirect_login_is_accepted_by_node_saml(world: World) -> None:
    login = world.sp.login(relay_state="/after?x=1&y=<2>")
    with world.client() as http:
        answer = http_saml_login(http, world.stack.url, login["url"])
    assert answer.action == world.sp.acs_url
    # the answer page may submit to us and to that ACS origin only
    acs_origin = world.sp.acs_url.rsplit("/", 1)[0]
    assert f"form-action 'self' {acs_origin}" in answer.csp, answer.csp
    assert "script-src 'nonce-" in answer.csp
    assert answer.fields["RelayState"] == "/after?x=1&y=<2>"  # echoed exactly
    assert "&lt;2&gt;" in answer.text  # and HTML-escaped in the page
    result = _validated(world.sp, answer)
    assert result["ok"] is True, result
    profile = result["profile"]
    assert profile["nameID"] == USERNAME
    assert profile["inResponseTo"] == login["request_id"]
    assert profile["device_id"] == world.stack.device.device_id
    assert profile["posture_outcome"] == answer.outcome
    assert profile["device_compliant"] == ("true" if answer.outcome == "allow" else "false")
    decisions = world.stack.decisions()
    assert [d.outcome for d in decisions][-1:] == [answer.outcome]
    # audited as OIDC's are: the one evaluator, channel saml, the SP's entity id as the app
    assert decisions[0].detail["channel"] == "saml"
    assert decisions[0].detail["app"] == SP_ID
    assert decisions[0].detail["user_id"] == USER_ID
    # the same Response again: node-saml's InResponseTo cache refuses it (single use)
    again = _validated(world.sp, answer)
    assert again["ok"] is False


def test_sp_initiated_post_binding_with_force_authn_asks_the_password(world: World) -> None:
    login = world.sp.login(relay_state="post", force_authn=True)
    assert 'ForceAuthn="true"' in login["request_xml"]
    with world.client() as http:
        started = http.post(
            world.sso,
            data={
                "SAMLRequest": base64.b64encode(login["request_xml"].encode()).decode(),
                "RelayState": "post",
            },
        )
        assert started.status_code == 303
        # a top-level GET first (it carries the SameSite=Lax SSO cookie the POST lacked)
        assert started.headers["Location"].endswith("/saml/sso/continue")
        resumed = http.get(world.stack.url + started.headers["Location"])
        assert resumed.headers["Location"].endswith("/login")  # credentials asked
        answer = http_saml_login(http, world.stack.url, world.stack.url + "/login")
    result = _validated(world.sp, answer)
    assert result["ok"] is True, result
    assert result["profile"]["inResponseTo"] == login["request_id"]
    assert answer.fields["RelayState"] == "post"


def test_signed_request_sp_signs_and_is_accepted(world: World) -> None:
    login = world.signed_sp.login(relay_state="r")
    assert "Signature=" in login["url"]
    with world.client() as http:
        answer = http_saml_login(http, world.stack.url, login["url"])
    result = _validated(world.signed_sp, answer)
    assert result["ok"] is True, result
    assert result["profile"]["nameID"] == "alice@example.com"  # nameid_attribute: email


def test_idp_initiated_login_for_an_sp_that_allows_it(world: World) -> None:
    world.sp.configure(
        idp_cert=idp_certificate_pem(world.stack.url),
        sso_url=world.sso,
        idp_entity_id=world.stack.url + "/saml/metadata",
        in_response_to="ifPresent",
    )
    start = f"{world.stack.url}/saml/idp-initiated?sp={quote(SP_ID, safe='')}&RelayState=home"
    with world.client() as http:
        answer = http_saml_login(http, world.stack.url, start)
    result = _validated(world.sp, answer)
    assert result["ok"] is True, result
    assert "inResponseTo" not in result["profile"] or not result["profile"]["inResponseTo"]
    assert answer.fields["RelayState"] == "home"


def test_idp_initiated_is_refused_for_an_sp_that_does_not_allow_it(world: World) -> None:
    start = f"{world.stack.url}/saml/idp-initiated?sp={quote(SIGNED_SP_ID, safe='')}"
    with world.client() as http:
        page = http.get(start)
    assert page.status_code == 403
    assert "saml-answer" not in page.text


def _okta_request(world: World, *, subject: str | None = USERNAME, **kw: Any) -> tuple[str, str]:
    request_id = "_okta" + secrets.token_hex(10)
    xml = authn_request_xml(
        issuer=OKTA_ID,
        destination=world.sso,
        acs_url=world.okta_acs,
        request_id=request_id,
        subject=subject,
        passive=kw.pop("passive", False),
    )
    return request_id, redirect_url(
        world.sso, xml, relay_state="okta-state", key=kw.pop("key", world.okta_key), **kw
    )


def test_okta_factor_mode_answers_for_the_same_name_id_without_a_password(world: World) -> None:
    request_id, url = _okta_request(world)
    with world.client() as http:
        first = http.get(url)
        assert first.status_code == 303
        assert first.headers["Location"].endswith("/login/device")  # no password asked
        answer = http_saml_login(http, world.stack.url, world.stack.url + "/login/device")
    result = _validated(world.okta, answer)
    assert result["ok"] is True, result
    assert result["profile"]["nameID"] == USERNAME  # the Subject NameID, echoed
    root = etree.fromstring(answer.response_xml.encode())
    assert root.get("InResponseTo") == request_id
    assert answer.fields["RelayState"] == "okta-state"
    assert [d.outcome for d in world.stack.decisions()][-1] == answer.outcome


def test_okta_factor_mode_refuses_unsigned_and_wrongly_signed_requests(world: World) -> None:
    _, unsigned = _okta_request(world, key=None)
    _, other_key = _okta_request(world, key=SpKey.generate("attacker"))
    _, tampered = _okta_request(world, tamper=True)
    with world.client() as http:
        for url, reason in (
            (unsigned, "signature_missing"),
            (other_key, "signature_invalid"),
            (tampered, "signature_invalid"),
        ):
            page = http.get(url)
            assert page.status_code == 400, page.text[:500]
            assert f'data-error="{reason}"' in page.text, page.text[:1500]
            assert "saml-answer" not in page.text  # nothing is ever sent to the SP


def test_okta_factor_mode_unknown_subject_is_an_authn_failed_response(world: World) -> None:
    _, url = _okta_request(world, subject="mallory")
    with world.client() as http:
        answer = http_saml_login(http, world.stack.url, url)
    assert answer.action == world.okta_acs
    assert _status(answer.response_xml) == ("Responder", "AuthnFailed")
    assert not _has_assertion(answer.response_xml)


# ---- attacks and failure paths -------------------------------------------------------------------


def test_a_replayed_request_id_is_refused(world: World) -> None:
    login = world.sp.login()
    with world.client() as http:
        first = http.get(login["url"])
        assert first.status_code == 303
    with world.client() as http:  # another browser, the same captured request
        again = http.get(login["url"])
    assert again.status_code == 400
    assert 'data-error="request_replayed"' in again.text
    assert "saml-answer" not in again.text


def test_an_acs_url_not_in_the_metadata_is_never_answered(world: World) -> None:
    xml = authn_request_xml(
        issuer=SP_ID,
        destination=world.sso,
        acs_url="https://evil.example/acs",
        request_id="_evil1",
    )
    with world.client() as http:
        page = http.get(redirect_url(world.sso, xml))
    assert page.status_code == 400
    assert 'data-error="unknown_acs"' in page.text
    assert "evil.example" not in page.headers.get("Content-Security-Policy", "")
    assert "saml-answer" not in page.text


def test_signed_requests_required_unsigned_is_refused(world: World) -> None:
    xml = authn_request_xml(
        issuer=SIGNED_SP_ID,
        destination=world.sso,
        acs_url=world.signed_sp.acs_url,
        request_id="_u1",
    )
    with world.client() as http:
        page = http.get(redirect_url(world.sso, xml))
    assert page.status_code == 400 and 'data-error="signature_missing"' in page.text


def test_is_passive_without_a_session_answers_no_passive(world: World) -> None:
    login = world.sp.login(passive=True)
    with world.client() as http:
        page = http.get(login["url"], follow_redirects=True)  # via /saml/sso/continue
    assert [r.headers["Location"] for r in page.history] == ["/saml/sso/continue"]
    answer = answer_of(page)
    assert answer.action == world.sp.acs_url
    assert _status(answer.response_xml) == ("Requester", "NoPassive")
    assert not _has_assertion(answer.response_xml)
    result = _validated(world.sp, answer)
    assert result["ok"] is False and "Requester" in result["error"], result


def test_relay_state_too_long_is_refused(world: World) -> None:
    login = world.sp.login(relay_state="x" * 2000)
    with world.client() as http:
        page = http.get(login["url"])
    assert page.status_code == 400
    assert "saml-answer" not in page.text


def test_login_forms_need_the_csrf_token(world: World) -> None:
    login = world.sp.login()
    with world.client() as http:
        page = http.get(login["url"])
        page = http.get(world.stack.url + "/login")
        assert 'name="password"' in page.text
        posted = http.post(
            world.stack.url + "/login/password",
            data={"username": USERNAME, "password": "x", "csrf_token": "forged"},
        )
    assert posted.status_code == 403


def test_unknown_sp_is_refused(world: World) -> None:
    xml = authn_request_xml(
        issuer="urn:unknown", destination=world.sso, acs_url=world.sp.acs_url, request_id="_x1"
    )
    with world.client() as http:
        page = http.get(redirect_url(world.sso, xml))
    assert page.status_code == 400 and 'data-error="unknown_sp"' in page.text


def test_metadata_lists_the_sso_url_for_both_bindings(world: World) -> None:
    metadata = httpx.get(world.stack.url + "/saml/metadata")
    assert metadata.status_code == 200
    assert metadata.headers["Content-Type"].startswith("application/samlmetadata+xml")
    root = etree.fromstring(metadata.content)
    assert root.get("entityID") == world.stack.url + "/saml/metadata"
    md = {"md": "urn:oasis:names:tc:SAML:2.0:metadata"}
    services = root.findall(".//md:SingleSignOnService", md)
    assert {s.get("Location") for s in services} == {world.sso}
    assert len(services) == 2
    assert USER_ID  # the directory user the stack made


@dataclass
class BlockedWorld:
    stack: Stack
    sp: NodeSamlSp
    okta: NodeSamlSp
    okta_key: SpKey


@pytest.fixture
def blocked_world(tmp_path: Path) -> Iterator[BlockedWorld]:
    okta_key = SpKey.generate("okta")
    with NodeSamlSp(entity_id=SP_ID) as sp, NodeSamlSp(entity_id=OKTA_ID) as okta:
        path = tmp_path / "sp.xml"
        path.write_text(sp.metadata(), encoding="utf-8")
        okta_path = tmp_path / "okta.xml"
        okta_path.write_text(
            sp_metadata_xml(OKTA_ID, okta.acs_url, signing=okta_key, authn_requests_signed=True),
            encoding="utf-8",
        )
        unspecified = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
        saml = {
            "saml": {
                "service_providers": [
                    {
                        "metadata_file": str(path),
                        "nameid_attribute": "username",
                        "nameid_format": unspecified,
                    },
                    {
                        "metadata_file": str(okta_path),
                        "okta_factor": True,
                        "require_signed_requests": True,
                        "linking": {"link_by": "username"},
                    },
                ]
            }
        }
        with login_stack(
            tmp_path,
            f"http://127.0.0.1:{free_port()}/cb",
            Platform.ANDROID,
            DeviceTraits(jailbroken=True),
            saml,
        ) as stack:
            for peer, irt in ((sp, "always"), (okta, "never")):
                peer.configure(
                    idp_cert=idp_certificate_pem(stack.url),
                    sso_url=stack.url + "/saml/sso",
                    idp_entity_id=stack.url + "/saml/metadata",
                    in_response_to=irt,
                )
            yield BlockedWorld(stack, sp, okta, okta_key)


def test_a_blocked_device_gets_the_remediation_page_and_no_response(
    blocked_world: BlockedWorld,
) -> None:
    stack, sp = blocked_world.stack, blocked_world.sp
    login = sp.login()
    with httpx.Client(timeout=15) as http:
        answer = http_saml_login(http, stack.url, login["url"])
    assert answer.status == 403
    assert 'data-outcome="block"' in answer.text
    assert answer.action is None and "SAMLResponse" not in answer.text
    assert [d.outcome for d in stack.decisions()] == ["block"]
    assert sp.stop() == 0


def test_is_passive_with_a_failing_device_answers_authn_failed_never_an_assertion(
    blocked_world: BlockedWorld,
) -> None:
    stack = blocked_world.stack
    sso = stack.url + "/saml/sso"
    xml = authn_request_xml(
        issuer=OKTA_ID,
        destination=sso,
        acs_url=blocked_world.okta.acs_url,
        request_id="_passive1",
        subject=USERNAME,
        passive=True,
    )
    url = redirect_url(sso, xml, relay_state="p", key=blocked_world.okta_key)
    with httpx.Client(timeout=15) as http:
        answer = http_saml_login(http, stack.url, url)
    assert answer.action == blocked_world.okta.acs_url, answer.text[:2000]
    assert 'data-outcome="block"' not in answer.text  # no remediation page: IsPassive
    assert _status(answer.response_xml) == ("Responder", "AuthnFailed")
    assert not _has_assertion(answer.response_xml)
    assert etree.fromstring(answer.response_xml.encode()).get("InResponseTo") == "_passive1"
    result = _validated(blocked_world.okta, answer)
    assert result["ok"] is False, result
    assert [d.outcome for d in stack.decisions()] == ["block"]
