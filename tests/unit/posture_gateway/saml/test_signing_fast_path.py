"""The fast signing path (``SamlSigner`` signs root elements in place, one shared signxml
signer, KeyInfo pre-built per key) makes exactly the signatures signxml's default path makes,
they verify (our verifier, xmlsec1), a key rotation is followed, and a change in signxml's
behaviour fails closed instead of handing out bad signatures."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from lxml import etree
from signxml.algorithms import DigestAlgorithm, SignatureConstructionMethod, SignatureMethod
from signxml.signer import XMLSigner

from posture_gateway.saml.protocol import signing
from posture_gateway.saml.protocol.constants import C14N_EXCLUSIVE, NS_DS, NS_SAML, NS_SAMLP
from posture_gateway.saml.protocol.errors import SignatureError
from posture_gateway.saml.protocol.response import (
    SamlStatus,
    build_assertion,
    build_error_response,
    build_response,
)
from posture_gateway.saml.protocol.response_verifier import verify_response
from posture_gateway.saml.protocol.service_providers import ServiceProviderConfig
from posture_gateway.saml.protocol.signing import SamlSigner, verify_enveloped
from posture_gateway.signing.key_ring import KeyRing, SigningKey

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
POSTURE = {"device_id": "dev-1", "device_compliant": True, "posture_age_s": 3}


@pytest.fixture
def make_sp(tmp_path: Path, sp_key):
    def make(**config):
        xml = sp_metadata_xml(signing=sp_key, encryption=sp_key)
        return provider(registry_for(tmp_path, (xml, ServiceProviderConfig(**config))))

    return make


def issue(sp, signer: SamlSigner, **kw):
    t = now()
    return build_response(
        idp_entity_id=IDP_ENTITY,
        sp=sp,
        acs_url=ACS_URL,
        in_response_to="_req1",
        name_id=kw.pop("name_id", "alice@corp.com"),
        session_index="_s1",
        authn_instant=t,
        signer=signer,
        now=t,
        attributes=POSTURE,
    )


def signxml_default_sign(element: etree._Element, key: SigningKey) -> etree._Element:
    """How SamlSigner signed before the fast path: a new XMLSigner, signxml's copies, the
    certificate given as an object."""
    placeholder = etree.Element(f"{{{NS_DS}}}Signature", nsmap={"ds": NS_DS})
    placeholder.set("Id", "placeholder")
    element.find(f"{{{NS_SAML}}}Issuer").addnext(placeholder)
    signed: etree._Element = XMLSigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm=SignatureMethod.RSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=C14N_EXCLUSIVE,
    ).sign(element, key=key.private_key, cert=[key.certificate], id_attribute="ID")
    return signed


def test_fast_path_output_is_byte_identical_to_signxml_default(make_sp, signer, idp_key) -> None:
    # RSA PKCS#1 v1.5 is deterministic: the same document signed both ways must give the same
    # bytes, digests and signature values included.
    sp = make_sp()
    t = now()
    assertion = build_assertion(
        idp_entity_id=IDP_ENTITY,
        sp=sp,
        acs_url=ACS_URL,
        in_response_to="_req1",
        name_id="alice@corp.com",
        session_index="_s1",
        authn_instant=t,
        attributes=POSTURE,
        now=t,
    )
    shell = etree.fromstring(
        build_error_response(
            idp_entity_id=IDP_ENTITY,
            destination=ACS_URL,
            in_response_to="_req1",
            status=SamlStatus.AUTHN_FAILED,
            now=t,
            signer=None,
        ).xml
    )
    fast_assertion, old_assertion = assertion, copy.deepcopy(assertion)
    fast_shell, old_shell = shell, copy.deepcopy(shell)

    fast_signed = signer.sign(fast_assertion)
    assert fast_signed is fast_assertion  # a root element is signed in place
    old_signed = signxml_default_sign(old_assertion, idp_key)
    assert etree.tostring(fast_signed) == etree.tostring(old_signed)

    fast_shell.append(fast_signed)
    old_shell.append(old_signed)
    fast = etree.tostring(signer.sign(fast_shell))
    old = etree.tostring(signxml_default_sign(old_shell, idp_key))
    assert fast == old
    assert len(etree.fromstring(fast).findall(".//ds:Signature", NS)) == 2
    assert b"placeholder" not in fast


@pytest.mark.peer
@pytest.mark.parametrize(
    "config", [{}, {"sign_response": False}, {"sign_assertion": False}, {"encrypt_assertion": True}]
)
def test_fast_path_round_trip_and_xmlsec1(make_sp, signer, idp_key, sp_key, xmlsec1, config):
    sp = make_sp(**config)
    issued = issue(sp, signer)
    verified = verify_response(
        issued.xml,
        idp_certs=[idp_key.certificate],
        expected_issuer=IDP_ENTITY,
        expected_audience=SP_ENTITY,
        expected_recipient=ACS_URL,
        expected_in_response_to="_req1",
        now=now(),
        decryption_key=sp_key.private_key if config.get("encrypt_assertion") else None,
    )
    assert verified.name_id == "alice@corp.com"
    root = etree.fromstring(issued.xml)
    if sp.config.sign_response:
        rc, err = xmlsec1.verify(issued.xml, idp_key, node_id=issued.response_id)
        assert rc == 0, err
    if sp.signs_assertion and not config.get("encrypt_assertion"):
        rc, err = xmlsec1.verify(issued.xml, idp_key, node_id=issued.assertion_id)
        assert rc == 0, err
        tampered = issued.xml.replace(b"alice@corp.com", b"mallory@corp.com")
        rc, _ = xmlsec1.verify(tampered, idp_key, node_id=issued.assertion_id)
        assert rc != 0
    assert b"placeholder" not in issued.xml
    # the certificate in KeyInfo is the signing key's, in the same text signxml writes
    text = root.findtext(".//ds:X509Certificate", namespaces=NS)
    assert text is not None
    pem = b"-----BEGIN CERTIFICATE-----\n" + text.encode() + b"-----END CERTIFICATE-----\n"
    assert x509.load_pem_x509_certificate(pem) == idp_key.certificate


@pytest.mark.peer
def test_cached_signer_follows_key_rotation(tmp_path: Path, make_sp, xmlsec1) -> None:
    ring = KeyRing.open(tmp_path / "ring", passphrase=None, dev_mode=True)
    signer = SamlSigner(ring)
    sp = make_sp()
    old_key = signer.active_key()
    before = issue(sp, signer)
    new_key = ring.rotate("RS256", overlap=timedelta(hours=1))
    assert signer.active_key().kid == new_key.kid != old_key.kid
    after = issue(sp, signer)

    for issued, key, other in ((before, old_key, new_key), (after, new_key, old_key)):
        for node_id in (issued.response_id, issued.assertion_id):
            rc, err = xmlsec1.verify(issued.xml, key, node_id=node_id)
            assert rc == 0, err
            rc, _ = xmlsec1.verify(issued.xml, other, node_id=node_id)
            assert rc != 0
        root = etree.fromstring(issued.xml)
        certs = {c.text for c in root.iterfind(".//ds:X509Certificate", NS)}
        assert len(certs) == 1  # both signatures name the key that made them
        verify_enveloped(root, certificates=[key.certificate], what="Response")
        with pytest.raises(SignatureError):
            verify_enveloped(root, certificates=[other.certificate], what="Response")


def test_element_inside_a_tree_is_signed_on_a_copy(signer, idp_key) -> None:
    parent = etree.Element("wrapper")
    inner = etree.SubElement(parent, f"{{{NS_SAML}}}Assertion", nsmap={"saml": NS_SAML})
    inner.set("ID", "_inner1")
    etree.SubElement(inner, f"{{{NS_SAML}}}Issuer").text = IDP_ENTITY
    signed = signer.sign(inner)
    assert signed is not inner and signed.getparent() is None
    assert signed[1].tag == f"{{{NS_DS}}}Signature"
    verify_enveloped(
        etree.fromstring(etree.tostring(signed)),
        certificates=[idp_key.certificate],
        what="Assertion",
    )


def test_signxml_no_longer_taking_the_placeholder_out_fails_closed(
    monkeypatch, make_sp, idp_key
) -> None:
    # If a signxml upgrade changed how _unpack treats the placeholder, the digest would cover
    # an empty ds:Signature: refuse rather than hand it out.
    monkeypatch.setattr(signing._InPlaceSigner, "_unpack", XMLSigner._unpack)
    with pytest.raises(SignatureError, match="did not build the signature"):
        issue(make_sp(), SamlSigner(KeyRing([idp_key])))


def test_first_signature_per_key_is_self_checked(monkeypatch, make_sp, idp_key) -> None:
    # A signature that does not verify (here: a wrong digest) is refused by the one-time
    # self-check of the first in-place signature made with a key.
    monkeypatch.setattr(
        signing._InPlaceSigner, "_get_digest", lambda self, data, algorithm: b"\0" * 32
    )
    fresh = SamlSigner(KeyRing([idp_key]))
    with pytest.raises(SignatureError, match="self-check"):
        issue(make_sp(), fresh)
    monkeypatch.undo()
    issued = issue(make_sp(), fresh)  # a good signature then passes the check
    verify_enveloped(
        etree.fromstring(issued.xml), certificates=[idp_key.certificate], what="Response"
    )


def test_signing_an_already_signed_element_is_refused(signer) -> None:
    element = etree.Element(f"{{{NS_SAML}}}Assertion", nsmap={"saml": NS_SAML})
    element.set("ID", "_twice")
    etree.SubElement(element, f"{{{NS_SAML}}}Issuer").text = IDP_ENTITY
    signed = signer.sign(element)
    before = etree.tostring(signed)
    with pytest.raises(SignatureError, match="already signed"):
        signer.sign(signed)
    assert etree.tostring(signed) == before  # left as it was
