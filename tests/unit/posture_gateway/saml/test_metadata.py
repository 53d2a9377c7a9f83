"""IdP metadata out (every published RSA key, rotation), SP/IdP metadata in, the registry
(duplicates and malformed files refused with ``file: reason``), per-SP config validation."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from lxml import etree
from pydantic import ValidationError

from posture_gateway.saml.protocol.constants import (
    BINDING_HTTP_POST,
    BINDING_HTTP_REDIRECT,
    NAMEID_EMAIL,
    NAMEID_PERSISTENT,
    NAMEID_UNSPECIFIED,
    NS_DS,
    NS_MD,
)
from posture_gateway.saml.protocol.errors import MetadataError
from posture_gateway.saml.protocol.metadata import (
    certificate_b64,
    idp_metadata_xml,
    parse_idp_metadata,
    parse_sp_metadata,
)
from posture_gateway.saml.protocol.service_providers import (
    ServiceProviderConfig,
    ServiceProviderRegistry,
)
from posture_gateway.saml.protocol.signing import SamlSigner
from posture_gateway.signing.key_ring import KeyRing

from .saml_factories import ACS_URL, ACS_URL_2, IDP_ENTITY, SP_ENTITY, SSO_URL, sp_metadata_xml

NS = {"md": NS_MD, "ds": NS_DS}


def test_idp_metadata_publishes_every_rsa_key_through_a_rotation(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path / "keys", passphrase=None, dev_mode=True)
    signer = SamlSigner(ring)
    first = signer.active_key()
    ring.rotate("RS256", overlap=timedelta(days=1))
    second = signer.active_key()
    assert first.kid != second.kid
    xml = idp_metadata_xml(
        entity_id=IDP_ENTITY,
        sso_url=SSO_URL,
        signing_certificates=signer.certificates(),
        want_authn_requests_signed=True,
    )
    root = etree.fromstring(xml)
    assert root.get("entityID") == IDP_ENTITY
    idp = root.find("md:IDPSSODescriptor", NS)
    assert idp is not None and idp.get("WantAuthnRequestsSigned") == "true"
    certs = [
        c.text
        for c in idp.findall(
            "md:KeyDescriptor[@use='signing']/ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS
        )
    ]
    assert certs == [certificate_b64(second.certificate), certificate_b64(first.certificate)]
    bindings = {
        s.get("Binding"): s.get("Location") for s in idp.findall("md:SingleSignOnService", NS)
    }
    assert bindings == {BINDING_HTTP_REDIRECT: SSO_URL, BINDING_HTTP_POST: SSO_URL}
    formats = [f.text for f in idp.findall("md:NameIDFormat", NS)]
    assert formats == [NAMEID_EMAIL, NAMEID_PERSISTENT, NAMEID_UNSPECIFIED]
    # our own parser reads it back as an upstream IdP's metadata
    parsed = parse_idp_metadata(xml)
    assert parsed.entity_id == IDP_ENTITY and len(parsed.signing_certificates) == 2
    assert parsed.want_authn_requests_signed


def test_signer_uses_the_new_key_after_rotation(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path / "keys", passphrase=None, dev_mode=True)
    signer = SamlSigner(ring)
    before = signer.active_key().kid
    ring.rotate("RS256", overlap=timedelta(hours=1))
    assert signer.active_key().kid != before


def test_idp_metadata_needs_a_certificate() -> None:
    with pytest.raises(MetadataError):
        idp_metadata_xml(entity_id=IDP_ENTITY, sso_url=SSO_URL, signing_certificates=[])


def test_sp_metadata_parsing(sp_key, other_key) -> None:
    meta = parse_sp_metadata(
        sp_metadata_xml(
            signing=sp_key,
            encryption=other_key,
            authn_requests_signed=True,
            want_assertions_signed=True,
        )
    )
    assert meta.entity_id == SP_ENTITY
    assert [(a.url, a.index, a.is_default) for a in meta.acs] == [
        (ACS_URL, 0, True),
        (ACS_URL_2, 1, False),
    ]
    assert meta.signing_certificates == (sp_key.certificate,)
    assert meta.encryption_certificates == (other_key.certificate,)
    assert meta.authn_requests_signed and meta.want_assertions_signed
    assert meta.nameid_formats == (NAMEID_EMAIL,)


def test_key_descriptor_without_use_counts_for_both(sp_key) -> None:
    xml = sp_metadata_xml(signing=sp_key).replace(b' use="signing"', b"")
    meta = parse_sp_metadata(xml)
    assert meta.signing_certificates == meta.encryption_certificates == (sp_key.certificate,)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda x: x.replace(b'entityID="https://app.example.org/saml/sp"', b""), "entityID"),
        (lambda x: x.replace(b"SPSSODescriptor", b"IDPSSODescriptor"), "SPSSODescriptor"),
        (lambda x: x.replace(b'index="1"', b'index="0"'), "duplicate ACS index"),
        (lambda x: x.replace(b'isDefault="false"', b'isDefault="true"'), "isDefault"),
        (lambda x: x.replace(b'index="1"', b'index="x"'), "not an index"),
        (lambda x: x.replace(b"<ds:X509Certificate>", b"<ds:X509Certificate>AAAA"), "certificate"),
        (lambda x: b"<!DOCTYPE x []>" + x, "DTD"),
        (lambda x: x[:-20], "XML"),
        (
            lambda x: x.replace(b'AuthnRequestsSigned="false"', b'AuthnRequestsSigned="yes"'),
            "boolean",
        ),
    ],
)
def test_malformed_sp_metadata_is_refused(sp_key, mutate, reason: str) -> None:
    with pytest.raises(MetadataError, match=reason):
        parse_sp_metadata(mutate(sp_metadata_xml(signing=sp_key)))


def test_registry_refuses_duplicates_and_names_files(tmp_path: Path, sp_key) -> None:
    a, b = tmp_path / "a.xml", tmp_path / "b.xml"
    a.write_bytes(sp_metadata_xml(signing=sp_key))
    b.write_bytes(sp_metadata_xml(signing=sp_key))
    config = ServiceProviderConfig()
    with pytest.raises(MetadataError, match=rf"^{b}: entity id .* already registered by {a}$"):
        ServiceProviderRegistry.from_files([(a, config), (b, config)])
    bad = tmp_path / "bad.xml"
    bad.write_bytes(b"<md:EntityDescriptor xmlns:md='urn:oasis:names:tc:SAML:2.0:metadata'/>")
    with pytest.raises(MetadataError, match=rf"^{bad}: .*entityID"):
        ServiceProviderRegistry.from_files([(bad, config)])
    missing = tmp_path / "missing.xml"
    with pytest.raises(MetadataError, match=rf"^{missing}: cannot read"):
        ServiceProviderRegistry.from_files([(missing, config)])
    registry = ServiceProviderRegistry.from_files([(a, config)])
    assert len(registry) == 1 and SP_ENTITY in registry and registry.get("nope") is None


def test_registry_refuses_configs_the_metadata_cannot_serve(tmp_path: Path) -> None:
    path = tmp_path / "sp.xml"
    path.write_bytes(sp_metadata_xml(signing=None))
    with pytest.raises(MetadataError, match="signing certificate"):
        ServiceProviderRegistry.from_files(
            [(path, ServiceProviderConfig(require_signed_requests=True))]
        )
    path.write_bytes(sp_metadata_xml(acs=(("https://x/acs", BINDING_HTTP_REDIRECT, 0, True),)))
    with pytest.raises(MetadataError, match="HTTP-POST"):
        ServiceProviderRegistry.from_files([(path, ServiceProviderConfig())])


def test_config_validation() -> None:
    with pytest.raises(ValidationError, match="okta_factor"):
        ServiceProviderConfig(okta_factor=True)
    ServiceProviderConfig(okta_factor=True, require_signed_requests=True)
    with pytest.raises(ValidationError, match="both be false"):
        ServiceProviderConfig(sign_response=False, sign_assertion=False)
    with pytest.raises(ValidationError, match="nameid_format"):
        ServiceProviderConfig(nameid_format="urn:x")
    with pytest.raises(ValidationError):
        ServiceProviderConfig(unknown_option=True)  # type: ignore[call-arg]
    config = ServiceProviderConfig()
    assert config.sign_response and config.sign_assertion and not config.allow_idp_initiated
