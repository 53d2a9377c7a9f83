"""SAML 2.0 metadata (saml-metadata-2.0-os): our IdP metadata out, SP and IdP metadata in.

- :func:`idp_metadata_xml` — the ``md:EntityDescriptor`` served at ``/saml/metadata``: our
  entity id, one ``KeyDescriptor use="signing"`` per RSA key the key ring still publishes
  (so a rotation works as in OIDC: SPs that refresh metadata learn the new key before it signs,
  and keep the old one while assertions it signed may still be in flight),
  ``SingleSignOnService`` for HTTP-Redirect and HTTP-POST, the NameID formats we issue, and
  ``WantAuthnRequestsSigned``.
- :func:`parse_sp_metadata` — an SP's ``SPSSODescriptor`` into :class:`ServiceProviderMetadata`.
- :func:`parse_idp_metadata` — an upstream IdP's ``IDPSSODescriptor`` (for the upstream SAML
  authenticator): entity id, SSO endpoints, signing certificates.

Parsing goes through :func:`.xml_safety.parse_xml`; every refusal is a :class:`MetadataError`.
Metadata signatures are not verified: the files are configured by an admin (like OIDC client
registrations), not fetched from the network.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from .constants import (
    BINDING_HTTP_POST,
    BINDING_HTTP_REDIRECT,
    NAMEID_FORMATS,
    NS_DS,
    NS_MD,
)
from .errors import MetadataError, SamlError
from .values import parse_index, saml_datetime
from .xml_safety import DEFAULT_LIMITS, XmlLimits, element_text, parse_xml

__all__ = [
    "AssertionConsumerService",
    "ServiceProviderMetadata",
    "IdentityProviderMetadata",
    "idp_metadata_xml",
    "sp_metadata_xml",
    "parse_sp_metadata",
    "parse_idp_metadata",
    "certificate_b64",
]

_MD = f"{{{NS_MD}}}"
_DS = f"{{{NS_DS}}}"
_NS = {"md": NS_MD, "ds": NS_DS}


@dataclass(frozen=True)
class AssertionConsumerService:
    """One ``md:AssertionConsumerService`` endpoint of an SP's metadata."""

    url: str
    binding: str
    index: int
    is_default: bool = False


@dataclass(frozen=True)
class ServiceProviderMetadata:
    """What an SP's metadata says (``md:SPSSODescriptor``)."""

    entity_id: str
    acs: tuple[AssertionConsumerService, ...]
    signing_certificates: tuple[x509.Certificate, ...] = ()
    encryption_certificates: tuple[x509.Certificate, ...] = ()
    authn_requests_signed: bool = False
    want_assertions_signed: bool = False
    nameid_formats: tuple[str, ...] = ()


def certificate_b64(cert: x509.Certificate) -> str:
    """The DER certificate, base64 (the text of ``ds:X509Certificate``)."""
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")


def idp_metadata_xml(
    *,
    entity_id: str,
    sso_url: str,
    signing_certificates: Sequence[x509.Certificate],
    want_authn_requests_signed: bool = False,
    nameid_formats: Sequence[str] = NAMEID_FORMATS,
    valid_until: datetime | None = None,
) -> bytes:
    """Our IdP's metadata document (UTF-8 XML with declaration). Needs >= 1 certificate."""
    if not signing_certificates:
        raise MetadataError("IdP metadata needs at least one signing certificate")
    root = etree.Element(_MD + "EntityDescriptor", nsmap={"md": NS_MD, "ds": NS_DS})
    root.set("entityID", entity_id)
    if valid_until is not None:
        root.set("validUntil", saml_datetime(valid_until))
    idp = etree.SubElement(root, _MD + "IDPSSODescriptor")
    idp.set("WantAuthnRequestsSigned", "true" if want_authn_requests_signed else "false")
    idp.set("protocolSupportEnumeration", "urn:oasis:names:tc:SAML:2.0:protocol")
    for cert in signing_certificates:
        kd = etree.SubElement(idp, _MD + "KeyDescriptor", use="signing")
        ki = etree.SubElement(kd, _DS + "KeyInfo")
        xd = etree.SubElement(ki, _DS + "X509Data")
        etree.SubElement(xd, _DS + "X509Certificate").text = certificate_b64(cert)
    for fmt in nameid_formats:
        etree.SubElement(idp, _MD + "NameIDFormat").text = fmt
    for binding in (BINDING_HTTP_REDIRECT, BINDING_HTTP_POST):
        etree.SubElement(idp, _MD + "SingleSignOnService", Binding=binding, Location=sso_url)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def sp_metadata_xml(
    *,
    entity_id: str,
    acs_url: str,
    signing_certificates: Sequence[x509.Certificate] = (),
    encryption_certificates: Sequence[x509.Certificate] = (),
    authn_requests_signed: bool = False,
    want_assertions_signed: bool = True,
) -> bytes:
    """Our SP metadata for an upstream SAML IdP: one HTTP-POST ACS at ``acs_url``."""
    root = etree.Element(_MD + "EntityDescriptor", nsmap={"md": NS_MD, "ds": NS_DS})
    root.set("entityID", entity_id)
    sp = etree.SubElement(root, _MD + "SPSSODescriptor")
    sp.set("AuthnRequestsSigned", "true" if authn_requests_signed else "false")
    sp.set("WantAssertionsSigned", "true" if want_assertions_signed else "false")
    sp.set("protocolSupportEnumeration", "urn:oasis:names:tc:SAML:2.0:protocol")
    for use, certs in (("signing", signing_certificates), ("encryption", encryption_certificates)):
        for cert in certs:
            kd = etree.SubElement(sp, _MD + "KeyDescriptor", use=use)
            xd = etree.SubElement(etree.SubElement(kd, _DS + "KeyInfo"), _DS + "X509Data")
            etree.SubElement(xd, _DS + "X509Certificate").text = certificate_b64(cert)
    acs = etree.SubElement(sp, _MD + "AssertionConsumerService")
    acs.set("Binding", BINDING_HTTP_POST)
    acs.set("Location", acs_url)
    acs.set("index", "0")
    acs.set("isDefault", "true")
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def _bool_attr(element: etree._Element, name: str) -> bool:
    value = element.get(name)
    if value is None:
        return False
    value = value.strip()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise MetadataError(f"{name}={value!r} is not an xs:boolean")


def _certificates(
    descriptor: etree._Element,
) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """(signing, encryption) certificates; a KeyDescriptor without ``use`` counts as both."""
    signing: list[x509.Certificate] = []
    encryption: list[x509.Certificate] = []
    for kd in descriptor.findall("md:KeyDescriptor", _NS):
        use = kd.get("use")
        if use not in (None, "signing", "encryption"):
            raise MetadataError(f'KeyDescriptor use="{use}" is not signing or encryption')
        for node in kd.findall("ds:KeyInfo/ds:X509Data/ds:X509Certificate", _NS):
            text = "".join(element_text(node, what="X509Certificate").split())
            try:
                der = base64.b64decode(text, validate=True)
                cert = x509.load_der_x509_certificate(der)
            except ValueError as exc:
                raise MetadataError(f"an X509Certificate is not a DER certificate: {exc}") from exc
            if use in (None, "signing"):
                signing.append(cert)
            if use in (None, "encryption"):
                encryption.append(cert)
    return signing, encryption


def _entity(data: bytes, limits: XmlLimits, descriptor_tag: str) -> tuple[str, etree._Element]:
    try:
        root = parse_xml(data, limits=limits)
    except SamlError as exc:
        raise MetadataError(f"metadata is not acceptable XML: {exc}") from exc
    if root.tag == _MD + "EntitiesDescriptor":
        entities = root.findall("md:EntityDescriptor", _NS)
        if len(entities) != 1:
            raise MetadataError(
                f"EntitiesDescriptor holds {len(entities)} entities; give one file per entity"
            )
        root = entities[0]
    if root.tag != _MD + "EntityDescriptor":
        raise MetadataError(f"root element is {root.tag!r}, not md:EntityDescriptor")
    entity_id = (root.get("entityID") or "").strip()
    if not entity_id:
        raise MetadataError("EntityDescriptor has no entityID")
    if len(entity_id) > 1024:
        raise MetadataError("entityID is longer than 1024 characters (metadata §2.3.2)")
    descriptors = root.findall(f"md:{descriptor_tag}", _NS)
    if len(descriptors) != 1:
        raise MetadataError(
            f"{entity_id}: expected one md:{descriptor_tag}, found {len(descriptors)}"
        )
    return entity_id, descriptors[0]


def parse_sp_metadata(
    data: bytes, *, limits: XmlLimits = DEFAULT_LIMITS
) -> ServiceProviderMetadata:
    """An SP's metadata (one EntityDescriptor with one SPSSODescriptor).

    Raises :class:`MetadataError` (malformed XML, no entityID, no ACS, an ACS without
    Location/Binding/index, duplicate ACS indexes, several isDefault, bad certificates).
    """
    entity_id, sp = _entity(data, limits, "SPSSODescriptor")
    acs: list[AssertionConsumerService] = []
    defaults = 0
    for position, node in enumerate(sp.findall("md:AssertionConsumerService", _NS)):
        url = (node.get("Location") or "").strip()
        binding = (node.get("Binding") or "").strip()
        if not url or not binding:
            raise MetadataError(f"{entity_id}: an AssertionConsumerService lacks Location/Binding")
        raw_index = node.get("index")
        try:
            index = parse_index(raw_index, what="ACS index") if raw_index is not None else position
        except SamlError as exc:
            raise MetadataError(f"{entity_id}: {exc}") from exc
        if any(a.index == index for a in acs):
            raise MetadataError(f"{entity_id}: duplicate ACS index {index}")
        is_default = _bool_attr(node, "isDefault")
        defaults += is_default
        acs.append(
            AssertionConsumerService(url=url, binding=binding, index=index, is_default=is_default)
        )
    if not acs:
        raise MetadataError(f"{entity_id}: SPSSODescriptor has no AssertionConsumerService")
    if defaults > 1:
        raise MetadataError(f'{entity_id}: more than one ACS has isDefault="true"')
    signing, encryption = _certificates(sp)
    formats = tuple(
        element_text(n, what="NameIDFormat") for n in sp.findall("md:NameIDFormat", _NS)
    )
    return ServiceProviderMetadata(
        entity_id=entity_id,
        acs=tuple(acs),
        signing_certificates=tuple(signing),
        encryption_certificates=tuple(encryption),
        authn_requests_signed=_bool_attr(sp, "AuthnRequestsSigned"),
        want_assertions_signed=_bool_attr(sp, "WantAssertionsSigned"),
        nameid_formats=formats,
    )


@dataclass(frozen=True)
class IdentityProviderMetadata:
    """An upstream IdP's metadata: who it is, where to send AuthnRequests, which keys sign."""

    entity_id: str
    sso_urls: dict[str, str]  # binding -> Location
    signing_certificates: tuple[x509.Certificate, ...]
    want_authn_requests_signed: bool = False


def parse_idp_metadata(
    data: bytes, *, limits: XmlLimits = DEFAULT_LIMITS
) -> IdentityProviderMetadata:
    """An upstream IdP's metadata (one EntityDescriptor with one IDPSSODescriptor).

    Raises :class:`MetadataError` when there is no signing certificate or SSO endpoint.
    """
    entity_id, idp = _entity(data, limits, "IDPSSODescriptor")
    urls: dict[str, str] = {}
    for node in idp.findall("md:SingleSignOnService", _NS):
        binding = (node.get("Binding") or "").strip()
        location = (node.get("Location") or "").strip()
        if binding and location:
            urls.setdefault(binding, location)
    if not urls:
        raise MetadataError(f"{entity_id}: IDPSSODescriptor has no SingleSignOnService")
    signing, _ = _certificates(idp)
    if not signing:
        raise MetadataError(f"{entity_id}: IDPSSODescriptor has no signing certificate")
    return IdentityProviderMetadata(
        entity_id=entity_id,
        sso_urls=urls,
        signing_certificates=tuple(signing),
        want_authn_requests_signed=_bool_attr(idp, "WantAuthnRequestsSigned"),
    )
