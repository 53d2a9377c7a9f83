"""Property: arbitrary bytes and strings into every parser raise only SamlError subclasses
(never an lxml, signxml, base64, zlib or cryptography exception, never anything else)."""

from __future__ import annotations

import base64
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posture_gateway.saml.protocol.authn_request import (
    parse_post_authn_request,
    parse_redirect_authn_request,
)
from posture_gateway.saml.protocol.bindings import decode_post, decode_redirect
from posture_gateway.saml.protocol.errors import SamlError
from posture_gateway.saml.protocol.metadata import parse_idp_metadata, parse_sp_metadata
from posture_gateway.saml.protocol.response import build_response
from posture_gateway.saml.protocol.response_verifier import verify_response
from posture_gateway.saml.protocol.service_providers import ServiceProviderConfig
from posture_gateway.saml.protocol.xml_safety import inflate, parse_xml

from .saml_factories import (
    ACS_URL,
    IDP_ENTITY,
    SP_ENTITY,
    SSO_URL,
    authn_request_xml,
    registry_for,
    sign_xml,
    sp_metadata_xml,
)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
NOW = datetime.now(UTC)


def only_saml_errors(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except SamlError:
        pass


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, sp_key):
    path: Path = tmp_path_factory.mktemp("fuzz")
    return registry_for(path, (sp_metadata_xml(signing=sp_key), ServiceProviderConfig()))


@pytest.fixture(scope="module")
def seeds(sp_key, signer, registry) -> list[bytes]:
    """Valid documents to mutate, so the fuzzer reaches past the first parse (signature
    verification, decryption-free assertion checks, metadata)."""
    request = authn_request_xml()
    sp = registry.get(SP_ENTITY)
    response = build_response(
        idp_entity_id=IDP_ENTITY,
        sp=sp,
        acs_url=ACS_URL,
        in_response_to="_x",
        name_id="alice@corp.com",
        session_index="_s",
        authn_instant=NOW,
        signer=signer,
        now=NOW,
        attributes={"device_compliant": True},
    ).xml
    return [request, sign_xml(request, sp_key), sp_metadata_xml(signing=sp_key), response]


xml_like = st.one_of(
    st.binary(max_size=2048),
    st.text(max_size=1024).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.lists(
        st.sampled_from(
            [
                b"<",
                b">",
                b"</",
                b"/>",
                b"a",
                b"samlp:",
                b"saml:",
                b'="',
                b'"',
                b"&amp;",
                b"&x;",
                b"<!--",
                b"-->",
                b"<?",
                b"?>",
                b"<![CDATA[",
                b"]]>",
                b" xmlns:samlp='urn:oasis:names:tc:SAML:2.0:protocol'",
                b"AuthnRequest",
                b"Response",
                b"Assertion",
                b"Signature",
                b"ID='_1'",
                b"\x00",
                b"\xff",
            ]
        ),
        max_size=60,
    ).map(b"".join),
)


@FUZZ
@given(data=xml_like)
def test_parse_xml_and_inflate(data: bytes) -> None:
    only_saml_errors(lambda: parse_xml(data))
    only_saml_errors(lambda: parse_xml(data.decode("latin-1")))
    only_saml_errors(lambda: inflate(data, max_bytes=4096))


@FUZZ
@given(data=xml_like, text=st.text(max_size=300))
def test_bindings(data: bytes, text: str) -> None:
    only_saml_errors(lambda: decode_post(text))
    only_saml_errors(lambda: decode_post(base64.b64encode(data)))
    only_saml_errors(lambda: decode_redirect(text))
    only_saml_errors(lambda: decode_redirect(text.encode("utf-8", "surrogatepass")))
    encoded = base64.b64encode(deflate(data)).decode()
    only_saml_errors(lambda: decode_redirect(f"SAMLRequest={encoded}&RelayState={text}"))


@FUZZ
@given(
    data=xml_like,
    seed=st.integers(0, 3),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
)
def test_authn_request_parsers(registry, seeds, data: bytes, seed: int, flips) -> None:
    mutated = bytearray(seeds[seed])
    for position, value in flips:
        mutated[position % len(mutated)] = value
    for doc in (data, bytes(mutated)):
        b64 = base64.b64encode(doc).decode()
        only_saml_errors(
            parse_post_authn_request,
            b64,
            relay_state=None,
            registry=registry,
            sso_url=SSO_URL,
            now=NOW,
        )
        query = "SAMLRequest=" + base64.b64encode(deflate(doc)).decode().replace("+", "%2B")
        only_saml_errors(
            parse_redirect_authn_request, query, registry=registry, sso_url=SSO_URL, now=NOW
        )


@FUZZ
@given(
    data=xml_like,
    seed=st.integers(0, 3),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
)
def test_response_and_metadata_parsers(idp_key, seeds, data: bytes, seed: int, flips) -> None:
    mutated = bytearray(seeds[seed])
    for position, value in flips:
        mutated[position % len(mutated)] = value
    for doc in (data, bytes(mutated)):
        only_saml_errors(
            verify_response,
            doc,
            idp_certs=[idp_key.certificate],
            expected_issuer=IDP_ENTITY,
            expected_audience=SP_ENTITY,
            expected_recipient=ACS_URL,
            expected_in_response_to="_x",
            now=NOW,
        )
        only_saml_errors(parse_sp_metadata, doc)
        only_saml_errors(parse_idp_metadata, doc)


# --- structure-aware: valid documents with fuzzed field values, signed by a trusted key, so
# the checks AFTER signature verification see arbitrary values too.

field_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            "0",
            "-1",
            "+1",
            "1_0",
            "65536",
            "true",
            "1",
            "2026-01-01T00:00:00Z",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "2026-02-30T00:00:00Z",
            "2026-01-01T00:00:00.1234567890Z",
            "urn:oasis:names:tc:SAML:2.0:cm:bearer",
            ACS_URL,
            SSO_URL,
        ]
    ),
)
REQUEST_ATTRS = [
    "ID",
    "Version",
    "IssueInstant",
    "Destination",
    "AssertionConsumerServiceURL",
    "AssertionConsumerServiceIndex",
    "ProtocolBinding",
    "ForceAuthn",
    "IsPassive",
]


@FUZZ
@given(
    changes=st.dictionaries(st.sampled_from(REQUEST_ATTRS), field_text, max_size=4),
    name_id=field_text,
    sign=st.booleans(),
)
def test_authn_request_fields_after_signature(registry, sp_key, changes, name_id, sign) -> None:
    from hypothesis import assume
    from lxml import etree

    root = etree.fromstring(
        authn_request_xml(subject_xml="<saml:Subject><saml:NameID>x</saml:NameID></saml:Subject>")
    )
    try:
        for attr, value in changes.items():
            root.set(attr, value)
        root.find("{urn:oasis:names:tc:SAML:2.0:assertion}Subject")[0].text = name_id
    except ValueError:
        assume(False)
    xml = etree.tostring(root)
    if sign and root.get("ID"):
        xml = sign_xml(xml, sp_key)
    only_saml_errors(
        parse_post_authn_request,
        base64.b64encode(xml).decode(),
        relay_state=None,
        registry=registry,
        sso_url=SSO_URL,
        now=NOW,
    )


ASSERTION_TARGETS = [
    ("", "IssueInstant"),
    ("", "Version"),
    ("saml:Issuer", None),
    ("saml:Subject/saml:NameID", None),
    ("saml:Subject/saml:SubjectConfirmation", "Method"),
    ("saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData", "NotOnOrAfter"),
    ("saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData", "NotBefore"),
    ("saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData", "Recipient"),
    ("saml:Conditions", "NotBefore"),
    ("saml:Conditions", "NotOnOrAfter"),
    ("saml:Conditions/saml:AudienceRestriction/saml:Audience", None),
    ("saml:AuthnStatement", "AuthnInstant"),
    ("saml:AuthnStatement", "SessionNotOnOrAfter"),
    ("saml:AttributeStatement/saml:Attribute", "Name"),
]


@FUZZ
@given(changes=st.lists(st.tuples(st.sampled_from(ASSERTION_TARGETS), field_text), max_size=4))
def test_response_fields_after_signature(idp_key, signer, seeds, changes) -> None:
    from hypothesis import assume
    from lxml import etree

    ns = {
        "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
        "ds": "http://www.w3.org/2000/09/xmldsig#",
    }
    root = etree.fromstring(seeds[3])
    root.remove(root.find("ds:Signature", ns))
    assertion = root.find("saml:Assertion", ns)
    assertion.remove(assertion.find("ds:Signature", ns))
    try:
        for (path, attr), value in changes:
            node = assertion.find(path, ns) if path else assertion
            if node is None:
                continue
            if attr is None:
                node.text = value
            else:
                node.set(attr, value)
    except ValueError:
        assume(False)
    root.replace(assertion, signer.sign(assertion))
    only_saml_errors(
        verify_response,
        etree.tostring(root),
        idp_certs=[idp_key.certificate],
        expected_issuer=IDP_ENTITY,
        expected_audience=SP_ENTITY,
        expected_recipient=ACS_URL,
        expected_in_response_to="_x",
        now=NOW,
    )


@FUZZ
@given(
    key_bytes=st.binary(max_size=300),
    content=st.binary(max_size=600),
    alg=st.sampled_from(
        [
            "http://www.w3.org/2009/xmlenc11#aes256-gcm",
            "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
            "urn:x",
        ]
    ),
)
def test_encrypted_assertion_garbage(idp_key, sp_key, key_bytes, content, alg) -> None:
    response = (
        '<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r" Version="2.0" '
        'InResponseTo="_x"><samlp:Status><samlp:StatusCode '
        'Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>'
        "<saml:EncryptedAssertion>"
        '<xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" '
        f'xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><xenc:EncryptionMethod Algorithm="{alg}"/>'
        "<ds:KeyInfo><xenc:EncryptedKey><xenc:EncryptionMethod "
        'Algorithm="http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"/><xenc:CipherData><xenc:CipherValue>'
        f"{base64.b64encode(key_bytes).decode()}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey>"
        "</ds:KeyInfo><xenc:CipherData><xenc:CipherValue>"
        f"{base64.b64encode(content).decode()}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData>"
        "</saml:EncryptedAssertion></samlp:Response>"
    ).encode()
    only_saml_errors(
        verify_response,
        response,
        idp_certs=[idp_key.certificate],
        expected_issuer=IDP_ENTITY,
        expected_audience=SP_ENTITY,
        expected_recipient=ACS_URL,
        expected_in_response_to="_x",
        now=NOW,
        decryption_key=sp_key.private_key,
    )
