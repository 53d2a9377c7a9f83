"""Building Responses: content, signature placement, xmlsec1 accepts our signatures, error
Responses carry no assertion, encryption decrypts with xmlsec1, key rotation in metadata."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from lxml import etree

from posture_gateway.saml.protocol.constants import (
    CM_BEARER,
    NAMEID_PERSISTENT,
    NS_DS,
    NS_SAML,
    NS_SAMLP,
    STATUS_AUTHN_FAILED,
    STATUS_NO_PASSIVE,
    STATUS_REQUEST_DENIED,
    STATUS_REQUESTER,
    STATUS_RESPONDER,
    STATUS_SUCCESS,
)
from posture_gateway.saml.protocol.errors import MessageError, UnknownAcsUrl
from posture_gateway.saml.protocol.response import (
    SamlStatus,
    build_error_response,
    build_response,
)
from posture_gateway.saml.protocol.service_providers import ServiceProviderConfig

from .saml_factories import (
    ACS_URL,
    IDP_ENTITY,
    SP_ENTITY,
    now,
    provider,
    registry_for,
    sp_metadata_xml,
)

NS = {"saml": NS_SAML, "samlp": NS_SAMLP, "ds": NS_DS}
POSTURE = {
    "device_id": "dev-123",
    "device_compliant": True,
    "posture_outcome": "allow",
    "posture_age_s": 42,
    "groups": ["finance", "staff"],
}


@pytest.fixture
def make_sp(tmp_path: Path, sp_key):
    def make(**config):
        xml = sp_metadata_xml(signing=sp_key, encryption=sp_key)
        return provider(registry_for(tmp_path, (xml, ServiceProviderConfig(**config))))

    return make


def issue(sp, signer, **kw):
    t = kw.pop("now", now())
    return build_response(
        idp_entity_id=IDP_ENTITY,
        sp=sp,
        acs_url=kw.pop("acs_url", ACS_URL),
        in_response_to=kw.pop("in_response_to", "_req1"),
        name_id="alice@corp.com",
        session_index="_sess1",
        authn_instant=t - timedelta(seconds=5),
        signer=signer,
        now=t,
        attributes=kw.pop("attributes", POSTURE),
        **kw,
    )


def test_response_content(make_sp, signer) -> None:
    t = now()
    issued = issue(make_sp(), signer, now=t)
    root = etree.fromstring(issued.xml)
    assert root.tag == f"{{{NS_SAMLP}}}Response"
    assert root.get("Destination") == ACS_URL and root.get("InResponseTo") == "_req1"
    assert root.get("ID") == issued.response_id
    assert root.findtext("saml:Issuer", namespaces=NS) == IDP_ENTITY
    code = root.find("samlp:Status/samlp:StatusCode", NS)
    assert code is not None and code.get("Value") == STATUS_SUCCESS
    (assertion,) = root.findall("saml:Assertion", NS)
    assert assertion.get("ID") == issued.assertion_id
    nameid = assertion.find("saml:Subject/saml:NameID", NS)
    assert nameid is not None and nameid.text == "alice@corp.com"
    data = assertion.find("saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData", NS)
    conf = assertion.find("saml:Subject/saml:SubjectConfirmation", NS)
    assert conf is not None and conf.get("Method") == CM_BEARER
    assert data is not None and data.get("Recipient") == ACS_URL
    assert data.get("InResponseTo") == "_req1" and data.get("NotOnOrAfter")
    assert (
        assertion.findtext("saml:Conditions/saml:AudienceRestriction/saml:Audience", namespaces=NS)
        == SP_ENTITY
    )
    authn = assertion.find("saml:AuthnStatement", NS)
    assert authn is not None and authn.get("SessionIndex") == "_sess1"
    attrs = {
        a.get("Name"): [v.text for v in a.findall("saml:AttributeValue", NS)]
        for a in assertion.findall("saml:AttributeStatement/saml:Attribute", NS)
    }
    assert attrs == {
        "device_id": ["dev-123"],
        "device_compliant": ["true"],
        "posture_outcome": ["allow"],
        "posture_age_s": ["42"],
        "groups": ["finance", "staff"],
    }


def test_signatures_sit_right_after_issuer(make_sp, signer) -> None:
    root = etree.fromstring(issue(make_sp(), signer).xml)
    assert root[0].tag == f"{{{NS_SAML}}}Issuer" and root[1].tag == f"{{{NS_DS}}}Signature"
    assertion = root.find("saml:Assertion", NS)
    assert assertion is not None
    assert assertion[0].tag == f"{{{NS_SAML}}}Issuer"
    assert assertion[1].tag == f"{{{NS_DS}}}Signature"
    method = root.find("ds:Signature/ds:SignedInfo/ds:SignatureMethod", NS)
    assert method is not None and method.get("Algorithm").endswith("rsa-sha256")
    c14n = root.find("ds:Signature/ds:SignedInfo/ds:CanonicalizationMethod", NS)
    assert c14n is not None and c14n.get("Algorithm") == "http://www.w3.org/2001/10/xml-exc-c14n#"


@pytest.mark.peer
def test_xmlsec1_accepts_our_response_and_assertion_signatures(
    make_sp, signer, idp_key, other_key, xmlsec1
) -> None:
    issued = issue(make_sp(), signer)
    rc, err = xmlsec1.verify(issued.xml, idp_key, node_id=issued.response_id)
    assert rc == 0, err
    rc, err = xmlsec1.verify(issued.xml, idp_key, node_id=issued.assertion_id)
    assert rc == 0, err
    rc, _ = xmlsec1.verify(issued.xml, other_key, node_id=issued.response_id)
    assert rc != 0  # the checker really checks
    tampered = issued.xml.replace(b"alice@corp.com", b"mallory@corp.com")
    rc, _ = xmlsec1.verify(tampered, idp_key, node_id=issued.assertion_id)
    assert rc != 0


@pytest.mark.parametrize(
    ("config", "response_signed", "assertion_signed"),
    [
        ({}, True, True),
        ({"sign_response": False}, False, True),
        ({"sign_assertion": False}, True, False),
    ],
)
def test_what_is_signed_follows_config(
    make_sp, signer, config, response_signed, assertion_signed
) -> None:
    root = etree.fromstring(issue(make_sp(**config), signer).xml)
    assert (root.find("ds:Signature", NS) is not None) is response_signed
    assert (root.find("saml:Assertion/ds:Signature", NS) is not None) is assertion_signed


def test_want_assertions_signed_in_metadata_forces_assertion_signature(
    tmp_path: Path, sp_key, signer
) -> None:
    xml = sp_metadata_xml(signing=sp_key, want_assertions_signed=True)
    sp = provider(registry_for(tmp_path, (xml, ServiceProviderConfig(sign_assertion=False))))
    root = etree.fromstring(issue(sp, signer).xml)
    assert root.find("saml:Assertion/ds:Signature", NS) is not None


def test_nameid_format_from_config_and_unknown_acs_refused(make_sp, signer) -> None:
    root = etree.fromstring(issue(make_sp(nameid_format=NAMEID_PERSISTENT), signer).xml)
    nameid = root.find("saml:Assertion/saml:Subject/saml:NameID", NS)
    assert nameid is not None and nameid.get("Format") == NAMEID_PERSISTENT
    with pytest.raises(UnknownAcsUrl):
        issue(make_sp(), signer, acs_url="https://evil.example/acs")


@pytest.mark.parametrize(
    ("status", "top", "sub"),
    [
        (SamlStatus.NO_PASSIVE, STATUS_REQUESTER, STATUS_NO_PASSIVE),
        (SamlStatus.AUTHN_FAILED, STATUS_RESPONDER, STATUS_AUTHN_FAILED),
        (SamlStatus.REQUEST_DENIED, STATUS_RESPONDER, STATUS_REQUEST_DENIED),
    ],
)
def test_error_responses_have_status_and_no_assertion(
    signer, idp_key, xmlsec1, status, top, sub
) -> None:
    issued = build_error_response(
        idp_entity_id=IDP_ENTITY,
        destination=ACS_URL,
        in_response_to="_req9",
        status=status,
        now=now(),
        signer=signer,
        status_message="device not compliant",
    )
    root = etree.fromstring(issued.xml)
    assert root.find("saml:Assertion", NS) is None and b"Assertion" not in issued.xml
    code = root.find("samlp:Status/samlp:StatusCode", NS)
    assert code is not None and code.get("Value") == top
    inner = code.find("samlp:StatusCode", NS)
    assert inner is not None and inner.get("Value") == sub
    assert issued.assertion_id is None
    rc, err = xmlsec1.verify(issued.xml, idp_key, node_id=issued.response_id)
    assert rc == 0, err
    with pytest.raises(MessageError):
        build_error_response(
            idp_entity_id=IDP_ENTITY,
            destination=ACS_URL,
            in_response_to=None,
            status=SamlStatus.SUCCESS,
            now=now(),
            signer=None,
        )


@pytest.mark.peer
@pytest.mark.parametrize("algorithm", ["aes256-gcm", "aes128-cbc"])
def test_encrypted_assertion_decrypts_with_xmlsec1(
    make_sp, signer, sp_key, idp_key, xmlsec1, algorithm
) -> None:
    sp = make_sp(encrypt_assertion=True, encryption_algorithm=algorithm)
    issued = issue(sp, signer)
    assert b"alice@corp.com" not in issued.xml and b"EncryptedAssertion" in issued.xml
    rc, out, err = xmlsec1.decrypt(issued.xml, sp_key)
    assert rc == 0, err
    decrypted = etree.fromstring(out)
    assertion = decrypted.find(".//saml:Assertion", NS)
    assert assertion is not None
    assert assertion.findtext("saml:Subject/saml:NameID", namespaces=NS) == "alice@corp.com"
    # the assertion inside is still signed, and its signature still verifies (xmlsec1)
    rc, err2 = xmlsec1.verify(etree.tostring(assertion), idp_key, node_id=issued.assertion_id)
    assert rc == 0, err2


def test_encrypt_without_certificate_is_a_config_error(tmp_path: Path, sp_key) -> None:
    from posture_gateway.saml.protocol.errors import MetadataError

    xml = sp_metadata_xml(signing=None)
    with pytest.raises(MetadataError, match="encryption"):
        registry_for(tmp_path, (xml, ServiceProviderConfig(encrypt_assertion=True)))


def test_signer_refuses_an_element_without_id(signer) -> None:
    from posture_gateway.saml.protocol.errors import SignatureError

    with pytest.raises(SignatureError):
        signer.sign(etree.fromstring(f'<saml:Assertion xmlns:saml="{NS_SAML}"/>'))


@pytest.mark.peer
def test_xmlsec1_accepts_our_signed_authn_request(sp_key, xmlsec1) -> None:
    from .saml_factories import authn_request_xml, sign_xml

    signed = sign_xml(authn_request_xml(request_id="_areq"), sp_key)
    rc, err = xmlsec1.verify(signed, sp_key, node_id="_areq")
    assert rc == 0, err


def test_values_xml_cannot_carry_are_a_message_error(make_sp, signer) -> None:
    with pytest.raises(MessageError, match="XML"):
        issue(make_sp(), signer, attributes={"device_id": "bad\x00value"})
    with pytest.raises(MessageError, match="XML"):
        build_error_response(
            idp_entity_id=IDP_ENTITY,
            destination=ACS_URL,
            in_response_to="_r\x01",
            status=SamlStatus.AUTHN_FAILED,
            now=now(),
            signer=signer,
        )


def test_signing_from_many_threads_at_once(make_sp, signer, idp_key) -> None:
    # The server signs from several threads per worker (granian: 8): one signer, no shared
    # mutable parser or signer state, every Response valid.
    from concurrent.futures import ThreadPoolExecutor

    from posture_gateway.saml.protocol.response_verifier import verify_response

    sp = make_sp()

    def one(i: int) -> str:
        t = now()
        issued = build_response(
            idp_entity_id=IDP_ENTITY,
            sp=sp,
            acs_url=ACS_URL,
            in_response_to=f"_req{i}",
            name_id=f"user{i}@corp.com",
            session_index="_s",
            authn_instant=t,
            signer=signer,
            now=t,
        )
        return verify_response(
            issued.xml,
            idp_certs=[idp_key.certificate],
            expected_issuer=IDP_ENTITY,
            expected_audience=SP_ENTITY,
            expected_recipient=ACS_URL,
            expected_in_response_to=f"_req{i}",
            now=t,
        ).name_id

    with ThreadPoolExecutor(max_workers=6) as pool:
        names = list(pool.map(one, range(48)))
    assert names == [f"user{i}@corp.com" for i in range(48)]
