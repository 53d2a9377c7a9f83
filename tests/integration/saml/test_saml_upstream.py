"""Broker mode with an upstream SAML IdP: the user is identified at the IdP, then the same
device check, then our own signed Response to the SP (node-saml checks it).

The upstream IdP is played by the test with the protocol layer's Response builder and a key
of its own (published in the IdP metadata file the gateway loads): the gateway's SP side must
verify its signature with that metadata certificate, the Audience (our SP entity id), the
Recipient (our ACS), InResponseTo (a request THIS browser started) and spend each assertion
id once. The ACS POST is cross-site (no session cookie); the gateway parks it and continues
on a top-level GET that carries the cookie.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from lxml import etree

from mdm_core.posture.model import Platform
from mdm_core.simulator.reports import DeviceTraits
from posture_gateway.saml.protocol.constants import BINDING_HTTP_POST, NAMEID_UNSPECIFIED
from posture_gateway.saml.protocol.metadata import idp_metadata_xml
from posture_gateway.saml.protocol.response import build_response
from posture_gateway.saml.protocol.service_providers import (
    AssertionConsumerService,
    ServiceProvider,
    ServiceProviderConfig,
    ServiceProviderMetadata,
)
from posture_gateway.saml.protocol.signing import SamlSigner
from posture_gateway.saml.protocol.values import new_id
from posture_gateway.signing.key_ring import KeyRing, SigningKey, generate_signing_key
from tests.e2e.login_stack import USERNAME, Stack, login_stack
from tests.e2e.saml_login import http_saml_login, idp_certificate_pem
from tests.e2e.saml_sp import NodeSamlSp
from tests.services import free_port

__all__: list[str] = []

pytestmark = [pytest.mark.peer]

SP_ID = "urn:test:broker-sp"
UPSTREAM_ID = "https://corp-idp.example/saml"
UPSTREAM_SSO = "https://corp-idp.example/sso"


@dataclass
class Broker:
    stack: Stack
    sp: NodeSamlSp
    idp_key: SigningKey

    def answer(
        self, request_id: str, *, name_id: str = USERNAME, key: SigningKey | None = None
    ) -> str:
        """The upstream IdP's signed Response to our AuthnRequest (base64)."""
        our_sp = ServiceProvider(
            metadata=ServiceProviderMetadata(
                entity_id=self.stack.url + "/saml/upstream/corp",
                acs=(
                    AssertionConsumerService(
                        url=self.stack.url + "/saml/upstream/corp/acs",
                        binding=BINDING_HTTP_POST,
                        index=0,
                        is_default=True,
                    ),
                ),
            ),
            config=ServiceProviderConfig(nameid_format=NAMEID_UNSPECIFIED),
        )
        issued = build_response(
            idp_entity_id=UPSTREAM_ID,
            sp=our_sp,
            acs_url=self.stack.url + "/saml/upstream/corp/acs",
            in_response_to=request_id,
            name_id=name_id,
            session_index=new_id(),
            authn_instant=datetime.now(UTC),
            signer=SamlSigner(KeyRing([key or self.idp_key])),
            now=datetime.now(UTC),
        )
        return base64.b64encode(issued.xml).decode()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    idp_key = generate_signing_key("RS256", issuer_name="corp-idp")
    upstream_file = tmp_path / "corp-idp.xml"
    upstream_file.write_bytes(
        idp_metadata_xml(
            entity_id=UPSTREAM_ID, sso_url=UPSTREAM_SSO, signing_certificates=[idp_key.certificate]
        )
    )
    with NodeSamlSp(entity_id=SP_ID) as sp:
        sp_file = tmp_path / "sp.xml"
        sp_file.write_text(sp.metadata(), encoding="utf-8")
        saml = {
            "saml": {
                "service_providers": [
                    {
                        "metadata_file": str(sp_file),
                        "nameid_attribute": "username",
                        "nameid_format": NAMEID_UNSPECIFIED,
                    }
                ],
                "upstream_idps": [
                    {
                        "name": "corp",
                        "label": "Sign in with Corp IdP",
                        "metadata_file": str(upstream_file),
                        "linking": {"link_by": "username"},
                    }
                ],
            }
        }
        with login_stack(
            tmp_path, f"http://127.0.0.1:{free_port()}/cb", Platform.LINUX, DeviceTraits(), saml
        ) as stack:
            sp.configure(
                idp_cert=idp_certificate_pem(stack.url),
                sso_url=stack.url + "/saml/sso",
                idp_entity_id=stack.url + "/saml/metadata",
            )
            yield Broker(stack, sp, idp_key)


def _to_upstream(http: httpx.Client, broker: Broker) -> str:
    """Start an SP login, pick the upstream IdP; return our AuthnRequest's ID."""
    login_page = http.get(broker.sp.login()["url"], follow_redirects=True)
    assert "Sign in with Corp IdP" in login_page.text, login_page.text[:2000]
    to_idp = http.get(broker.stack.url + "/login/with/saml-corp")
    assert to_idp.status_code == 303
    location = to_idp.headers["Location"]
    assert location.startswith(UPSTREAM_SSO + "?")
    query = parse_qs(urlsplit(location).query)
    xml = zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15)
    request = etree.fromstring(xml)
    assert (
        request.get("AssertionConsumerServiceURL") == broker.stack.url + "/saml/upstream/corp/acs"
    )
    assert query["RelayState"][0] == request.get("ID")
    return str(request.get("ID"))


def _post_acs(broker: Broker, saml_response: str, relay_state: str) -> httpx.Response:
    # The IdP's form POST is cross-site: the browser sends no session cookie with it.
    with httpx.Client(timeout=15) as stranger:
        return stranger.post(
            broker.stack.url + "/saml/upstream/corp/acs",
            data={"SAMLResponse": saml_response, "RelayState": relay_state},
        )


def test_upstream_saml_idp_identifies_the_user_then_the_device_check_and_our_response(
    broker: Broker,
) -> None:
    with httpx.Client(timeout=15) as http:
        request_id = _to_upstream(http, broker)
        parked = _post_acs(broker, broker.answer(request_id), request_id)
        assert parked.status_code == 303
        resumed = http.get(broker.stack.url + parked.headers["Location"])
        assert resumed.status_code == 303, resumed.text[:2000]
        assert resumed.headers["Location"].endswith("/login/device")
        answer = http_saml_login(http, broker.stack.url, broker.stack.url + "/login/device")
    result = broker.sp.validate(answer.saml_response, answer.fields.get("RelayState"))
    assert result["ok"] is True, result
    assert result["profile"]["nameID"] == USERNAME
    assert result["profile"]["device_id"] == broker.stack.device.device_id


def test_upstream_response_signed_by_another_key_is_refused(broker: Broker) -> None:
    forged_key = generate_signing_key("RS256", issuer_name="attacker")
    with httpx.Client(timeout=15) as http:
        request_id = _to_upstream(http, broker)
        parked = _post_acs(broker, broker.answer(request_id, key=forged_key), request_id)
        resumed = http.get(broker.stack.url + parked.headers["Location"])
    assert resumed.status_code == 403
    assert "upstream.protocol" in resumed.text


def test_upstream_response_for_a_request_this_browser_did_not_start_is_refused(
    broker: Broker,
) -> None:
    with httpx.Client(timeout=15) as victim, httpx.Client(timeout=15) as attacker:
        _to_upstream(victim, broker)
        attacker_request = _to_upstream(attacker, broker)
        # the attacker's own valid Response, pushed into the victim's browser (login CSRF)
        parked = _post_acs(broker, broker.answer(attacker_request), attacker_request)
        resumed = victim.get(broker.stack.url + parked.headers["Location"])
    assert resumed.status_code == 400
    assert "upstream.state_mismatch" in resumed.text


def test_a_parked_response_is_single_use(broker: Broker) -> None:
    with httpx.Client(timeout=15) as http:
        request_id = _to_upstream(http, broker)
        parked = _post_acs(broker, broker.answer(request_id), request_id)
        first = http.get(broker.stack.url + parked.headers["Location"])
        assert first.status_code == 303
        again = http.get(broker.stack.url + parked.headers["Location"])
    assert again.status_code == 400


def test_our_sp_metadata_for_the_upstream_names_the_acs_and_our_certificate(
    broker: Broker,
) -> None:
    from posture_gateway.saml.protocol.metadata import parse_sp_metadata

    response = httpx.get(broker.stack.url + "/saml/upstream/corp/metadata")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/samlmetadata+xml")
    parsed = parse_sp_metadata(response.content)
    assert parsed.entity_id == broker.stack.url + "/saml/upstream/corp"
    assert [a.url for a in parsed.acs] == [broker.stack.url + "/saml/upstream/corp/acs"]
    idp_cert = idp_certificate_pem(broker.stack.url)  # one key ring: the same certificate
    from cryptography.hazmat.primitives import serialization

    assert (
        parsed.signing_certificates[0].public_bytes(serialization.Encoding.PEM).decode() == idp_cert
    )
    assert httpx.get(broker.stack.url + "/saml/upstream/nope/metadata").status_code == 404
