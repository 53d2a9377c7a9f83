"""AuthnRequest parsing and validation: bindings, signatures (POST and Redirect), exact ACS
resolution, time window, Destination, Subject (Okta factor mode), and the attacks."""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from lxml import etree

from posture_gateway.saml.protocol.authn_request import (
    parse_post_authn_request,
    parse_redirect_authn_request,
)
from posture_gateway.saml.protocol.bindings import encode_redirect
from posture_gateway.saml.protocol.constants import (
    BINDING_HTTP_POST,
    BINDING_HTTP_REDIRECT,
    NAMEID_EMAIL,
)
from posture_gateway.saml.protocol.errors import (
    DestinationMismatch,
    MessageError,
    SignatureError,
    SignatureMissing,
    StaleMessage,
    UnknownAcsUrl,
    UnknownServiceProvider,
    UnsupportedAlgorithm,
)
from posture_gateway.saml.protocol.service_providers import ServiceProviderConfig

from .saml_factories import (
    ACS_URL,
    ACS_URL_2,
    SP_ENTITY,
    SSO_URL,
    authn_request_xml,
    now,
    registry_for,
    sign_sha1,
    sign_xml,
    sp_metadata_xml,
)

SUBJECT = '<saml:Subject><saml:NameID Format="{fmt}">{value}</saml:NameID></saml:Subject>'


@pytest.fixture
def registry(tmp_path: Path, sp_key):
    return registry_for(tmp_path, (sp_metadata_xml(signing=sp_key), ServiceProviderConfig()))


@pytest.fixture
def strict_registry(tmp_path: Path, sp_key):
    config = ServiceProviderConfig(require_signed_requests=True, okta_factor=True)
    return registry_for(tmp_path, (sp_metadata_xml(signing=sp_key), config))


def post(xml: bytes, registry, **kw):
    return parse_post_authn_request(
        base64.b64encode(xml).decode(),
        relay_state=kw.pop("relay_state", None),
        registry=registry,
        sso_url=SSO_URL,
        now=kw.pop("now", now()),
        **kw,
    )


def redirect(xml: bytes, registry, *, key=None, relay_state=None, **kw):
    url = encode_redirect(
        SSO_URL, xml, relay_state=relay_state, signing_key=key.private_key if key else None
    )
    return parse_redirect_authn_request(
        urlsplit(url).query.encode(), registry=registry, sso_url=SSO_URL, now=now(), **kw
    )


def test_post_unsigned_request_parses_to_frozen_data(registry) -> None:
    xml = authn_request_xml(request_id="_r1", force_authn=True, is_passive=False)
    request = post(xml, registry, relay_state="rs")
    assert request.id == "_r1"
    assert request.issuer == SP_ENTITY
    assert request.acs.url == ACS_URL
    assert request.binding == BINDING_HTTP_POST
    assert request.protocol_binding == BINDING_HTTP_POST
    assert request.force_authn and not request.is_passive
    assert request.nameid_policy_format == NAMEID_EMAIL
    assert request.nameid_policy_allow_create is True
    assert request.relay_state == "rs"
    assert not request.signed
    assert request.subject_name_id is None
    with pytest.raises(AttributeError):
        request.id = "_other"  # type: ignore[misc]


def test_redirect_unsigned_and_signed(registry, sp_key) -> None:
    request = redirect(authn_request_xml(is_passive=True), registry, relay_state="/app")
    assert request.binding == BINDING_HTTP_REDIRECT and not request.signed
    assert request.is_passive and request.relay_state == "/app"
    signed = redirect(authn_request_xml(), registry, key=sp_key, relay_state="x")
    assert signed.signed


def test_post_signed_request_is_verified(registry, sp_key) -> None:
    request = post(sign_xml(authn_request_xml(request_id="_s1"), sp_key), registry)
    assert request.signed and request.id == "_s1"


def test_signature_by_a_cert_not_in_metadata_is_refused(registry, other_key) -> None:
    with pytest.raises(SignatureError, match="trusted"):
        post(sign_xml(authn_request_xml(), other_key), registry)
    with pytest.raises(SignatureError):
        redirect(authn_request_xml(), registry, key=other_key)


def test_unsigned_request_where_required_is_refused(strict_registry, sp_key) -> None:
    with pytest.raises(SignatureMissing):
        post(authn_request_xml(), strict_registry)
    with pytest.raises(SignatureMissing):
        redirect(authn_request_xml(), strict_registry)
    assert post(sign_xml(authn_request_xml(), sp_key), strict_registry).signed
    assert redirect(authn_request_xml(), strict_registry, key=sp_key).signed


def test_metadata_authn_requests_signed_means_required(tmp_path: Path, sp_key) -> None:
    registry = registry_for(
        tmp_path,
        (sp_metadata_xml(signing=sp_key, authn_requests_signed=True), ServiceProviderConfig()),
    )
    with pytest.raises(SignatureMissing):
        post(authn_request_xml(), registry)


def test_tampered_signed_request_is_refused(registry, sp_key) -> None:
    signed = sign_xml(authn_request_xml(), sp_key)
    tampered = signed.replace(ACS_URL.encode(), ACS_URL_2.encode())
    with pytest.raises(SignatureError):
        post(tampered, registry)


def test_signature_over_a_different_element_is_refused(registry, strict_registry, sp_key) -> None:
    # A genuine signed request wrapped into an unsigned evil one (in Extensions): refused,
    # whether or not the SP requires signatures; never read as "signed".
    signed = etree.fromstring(sign_xml(authn_request_xml(request_id="_genuine"), sp_key))
    evil = etree.fromstring(authn_request_xml(request_id="_evil", acs_url=ACS_URL_2))
    ext = etree.SubElement(evil, "{urn:oasis:names:tc:SAML:2.0:protocol}Extensions")
    ext.append(signed)
    for reg in (registry, strict_registry):
        with pytest.raises(MessageError, match="another AuthnRequest"):
            post(etree.tostring(evil), reg)
    # only the signature moved into Extensions: refused as well
    evil1 = etree.fromstring(authn_request_xml(request_id="_evil1"))
    ext1 = etree.SubElement(evil1, "{urn:oasis:names:tc:SAML:2.0:protocol}Extensions")
    ext1.append(signed.find("{http://www.w3.org/2000/09/xmldsig#}Signature"))
    with pytest.raises(SignatureError, match="child"):
        post(etree.tostring(evil1), registry)
    signed = etree.fromstring(sign_xml(authn_request_xml(request_id="_genuine"), sp_key))
    # the genuine signature moved to the evil root, referencing the genuine ID: refused
    evil2 = etree.fromstring(authn_request_xml(request_id="_evil2"))
    evil2.insert(1, signed.find("{http://www.w3.org/2000/09/xmldsig#}Signature"))
    with pytest.raises(SignatureError, match="reference"):
        post(etree.tostring(evil2), registry)


def test_duplicate_ids_are_refused(registry, sp_key) -> None:
    xml = authn_request_xml(
        request_id="_dup",
        inner_xml='<samlp:Extensions><x xmlns="urn:x" ID="_dup"/></samlp:Extensions>',
    )
    with pytest.raises(SignatureError, match="more than once"):
        post(xml, registry)


def test_redirect_request_with_an_xml_signature_is_refused(registry, sp_key) -> None:
    with pytest.raises(SignatureError, match="Redirect"):
        redirect(sign_xml(authn_request_xml(), sp_key), registry)


def test_sha1_redirect_signature_is_refused(registry, sp_key) -> None:
    url = encode_redirect(SSO_URL, authn_request_xml(), signing_key=sp_key.private_key)
    query = re.sub(
        r"SigAlg=[^&]*",
        "SigAlg=" + quote("http://www.w3.org/2000/09/xmldsig#rsa-sha1", safe=""),
        urlsplit(url).query,
    )
    with pytest.raises(UnsupportedAlgorithm):
        parse_redirect_authn_request(query, registry=registry, sso_url=SSO_URL, now=now())


def test_sha1_xml_signature_is_refused(registry, sp_key) -> None:
    signed = sign_sha1(authn_request_xml(request_id="_sha1"), sp_key)
    assert b"rsa-sha1" in signed
    with pytest.raises(UnsupportedAlgorithm, match="SHA-1"):
        post(signed, registry)


def test_unknown_issuer_is_refused(registry) -> None:
    with pytest.raises(UnknownServiceProvider):
        post(authn_request_xml(issuer="https://evil.example"), registry)


@pytest.mark.parametrize(
    "acs_url",
    [
        "https://evil.example/acs",
        ACS_URL + "/",
        ACS_URL.upper(),
        ACS_URL + "?x=1",
        "https://app.example.org/saml/acs/../acs",
    ],
)
def test_acs_url_must_match_metadata_exactly(registry, acs_url: str) -> None:
    with pytest.raises(UnknownAcsUrl):
        post(authn_request_xml(acs_url=acs_url), registry)


def test_acs_by_index_and_default(registry) -> None:
    assert post(authn_request_xml(acs_url=None, acs_index=1), registry).acs.url == ACS_URL_2
    assert post(authn_request_xml(acs_url=None), registry).acs.url == ACS_URL
    with pytest.raises(UnknownAcsUrl):
        post(authn_request_xml(acs_url=None, acs_index=7), registry)
    with pytest.raises(UnknownAcsUrl, match="both"):
        post(authn_request_xml(acs_url=ACS_URL, acs_index=0), registry)
    with pytest.raises(UnknownAcsUrl, match="HTTP-POST only"):
        post(
            authn_request_xml(protocol_binding="urn:oasis:names:tc:SAML:2.0:bindings:SOAP"),
            registry,
        )


def test_issue_instant_window(registry) -> None:
    t = now()
    with pytest.raises(StaleMessage, match="old"):
        post(authn_request_xml(issue_instant=t - timedelta(minutes=6)), registry, now=t)
    with pytest.raises(StaleMessage, match="future"):
        post(authn_request_xml(issue_instant=t + timedelta(minutes=2)), registry, now=t)
    post(authn_request_xml(issue_instant=t - timedelta(minutes=4)), registry, now=t)
    post(authn_request_xml(issue_instant=t + timedelta(seconds=60)), registry, now=t)
    xml = authn_request_xml().replace(b'IssueInstant="', b'IssueInstant="x')
    with pytest.raises(MessageError):
        post(xml, registry)


def test_destination_must_be_our_sso_url(registry, sp_key) -> None:
    with pytest.raises(DestinationMismatch):
        post(authn_request_xml(destination="https://other.example/sso"), registry)
    assert post(authn_request_xml(destination=None), registry).destination is None
    with pytest.raises(DestinationMismatch, match="signed"):
        post(sign_xml(authn_request_xml(destination=None), sp_key), registry)


def test_version_and_root_element(registry) -> None:
    with pytest.raises(MessageError, match="2.0"):
        post(authn_request_xml().replace(b'Version="2.0"', b'Version="1.1"'), registry)
    with pytest.raises(MessageError, match="AuthnRequest"):
        post(b'<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"/>', registry)


def test_okta_factor_subject_is_read_from_the_signed_request(strict_registry, sp_key) -> None:
    subject = SUBJECT.format(fmt=NAMEID_EMAIL, value="alice@corp.com")
    request = post(sign_xml(authn_request_xml(subject_xml=subject), sp_key), strict_registry)
    assert request.subject_name_id == "alice@corp.com"
    assert request.subject_name_id_format == NAMEID_EMAIL
    assert request.signed


def test_comment_injection_in_subject_never_truncates(registry, strict_registry, sp_key) -> None:
    subject = SUBJECT.format(fmt=NAMEID_EMAIL, value="alice@corp.com<!---->.evil.com")
    unsigned = post(authn_request_xml(subject_xml=subject), registry)
    assert unsigned.subject_name_id == "alice@corp.com.evil.com"
    # signed first, the comment inserted afterwards (exc-c14n drops comments, so the
    # signature still verifies): the value read is still the whole text
    signed = sign_xml(
        authn_request_xml(
            subject_xml=SUBJECT.format(fmt=NAMEID_EMAIL, value="alice@corp.com.evil.com")
        ),
        sp_key,
    )
    injected = signed.replace(b"alice@corp.com.evil.com", b"alice@corp.com<!---->.evil.com")
    request = post(injected, strict_registry)
    assert request.subject_name_id == "alice@corp.com.evil.com"


def test_subject_without_a_single_nameid_is_refused(registry) -> None:
    with pytest.raises(MessageError):
        post(authn_request_xml(subject_xml="<saml:Subject/>"), registry)


def test_requested_authn_context(registry) -> None:
    inner = (
        '<samlp:RequestedAuthnContext Comparison="minimum"><saml:AuthnContextClassRef>'
        "urn:x:mfa</saml:AuthnContextClassRef></samlp:RequestedAuthnContext>"
    )
    request = post(authn_request_xml(inner_xml=inner), registry)
    assert request.requested_authn_context is not None
    assert request.requested_authn_context.comparison == "minimum"
    assert request.requested_authn_context.class_refs == ("urn:x:mfa",)


def test_xxe_in_a_request_is_refused(registry) -> None:
    from posture_gateway.saml.protocol.errors import XmlForbidden

    xml = b'<!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + authn_request_xml(
        issuer="&e;"
    )
    with pytest.raises(XmlForbidden):
        post(xml, registry)


@pytest.mark.parametrize("index", ["+1", "1_0", "\u0661", " -1", "70000", ""])
def test_acs_index_must_be_ascii_digits(registry, index: str) -> None:
    with pytest.raises(MessageError):
        post(
            authn_request_xml(acs_url=None, acs_index=None, inner_xml="").replace(
                b"<samlp:AuthnRequest ",
                f'<samlp:AuthnRequest AssertionConsumerServiceIndex="{index}" '.encode(),
            ),
            registry,
        )


@pytest.mark.parametrize(
    "instant",
    [
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "2026-13-01T00:00:00Z",
        "2026-01-01T00:00:00",
    ],
)
def test_odd_issue_instants_are_message_errors(registry, instant: str) -> None:
    xml = re.sub(
        rb'IssueInstant="[^"]*"', f'IssueInstant="{instant}"'.encode(), authn_request_xml()
    )
    with pytest.raises(MessageError):
        post(xml, registry)


def test_ecdsa_sha256_xml_signature_is_accepted(tmp_path: Path) -> None:
    from signxml.algorithms import SignatureConstructionMethod
    from signxml.signer import XMLSigner

    from posture_gateway.signing.key_ring import generate_signing_key

    ec_key = generate_signing_key("ES256")
    registry = registry_for(
        tmp_path,
        (sp_metadata_xml(signing=ec_key), ServiceProviderConfig(require_signed_requests=True)),
    )
    root = etree.fromstring(authn_request_xml(request_id="_ec"))
    placeholder = etree.Element("{http://www.w3.org/2000/09/xmldsig#}Signature", Id="placeholder")
    root.insert(1, placeholder)
    signed = XMLSigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm="ecdsa-sha256",
        digest_algorithm="sha256",
        c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#",
    ).sign(root, key=ec_key.private_key, cert=[ec_key.certificate], id_attribute="ID")
    request = post(etree.tostring(signed), registry)
    assert request.signed and request.id == "_ec"
