"""Test data for the SAML protocol layer: keys, SP metadata, AuthnRequests, xmlsec1 runs.

The AuthnRequest builder is a plain template (so tests can inject comments, extra elements,
wrong values); signing uses our :class:`SamlSigner` with the SP's own key ring, and every
signature we make is also checked by the independent ``xmlsec1`` where a test says so.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from lxml import etree

from posture_gateway.saml.protocol.constants import BINDING_HTTP_POST, NAMEID_EMAIL
from posture_gateway.saml.protocol.metadata import certificate_b64
from posture_gateway.saml.protocol.service_providers import (
    ServiceProvider,
    ServiceProviderConfig,
    ServiceProviderRegistry,
)
from posture_gateway.saml.protocol.signing import SamlSigner
from posture_gateway.saml.protocol.values import new_id, saml_datetime
from posture_gateway.signing.key_ring import KeyRing, SigningKey

IDP_ENTITY = "https://gateway.example.com/saml/metadata"
SSO_URL = "https://gateway.example.com/saml/sso"
SP_ENTITY = "https://app.example.org/saml/sp"
ACS_URL = "https://app.example.org/saml/acs"
ACS_URL_2 = "https://app.example.org/saml/acs2"


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def sp_metadata_xml(
    *,
    entity_id: str = SP_ENTITY,
    signing: SigningKey | None = None,
    encryption: SigningKey | None = None,
    authn_requests_signed: bool = False,
    want_assertions_signed: bool = False,
    acs: tuple[tuple[str, str, int, bool], ...] = (
        (ACS_URL, BINDING_HTTP_POST, 0, True),
        (ACS_URL_2, BINDING_HTTP_POST, 1, False),
    ),
) -> bytes:
    keys = ""
    if signing is not None:
        keys += (
            '<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>'
            f"{certificate_b64(signing.certificate)}</ds:X509Certificate></ds:X509Data>"
            "</ds:KeyInfo></md:KeyDescriptor>"
        )
    if encryption is not None:
        keys += (
            '<md:KeyDescriptor use="encryption"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>'
            f"{certificate_b64(encryption.certificate)}</ds:X509Certificate></ds:X509Data>"
            "</ds:KeyInfo></md:KeyDescriptor>"
        )
    endpoints = "".join(
        f'<md:AssertionConsumerService Binding="{b}" Location="{u}" index="{i}"'
        f' isDefault="{"true" if d else "false"}"/>'
        for u, b, i, d in acs
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        f'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity_id}">'
        f'<md:SPSSODescriptor AuthnRequestsSigned="{str(authn_requests_signed).lower()}" '
        f'WantAssertionsSigned="{str(want_assertions_signed).lower()}" '
        'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f"{keys}<md:NameIDFormat>{NAMEID_EMAIL}</md:NameIDFormat>{endpoints}"
        "</md:SPSSODescriptor></md:EntityDescriptor>"
    ).encode()


def registry_for(
    tmp_path: Path, *entries: tuple[bytes, ServiceProviderConfig]
) -> ServiceProviderRegistry:
    files = []
    for n, (xml, config) in enumerate(entries):
        path = tmp_path / f"sp{n}.xml"
        path.write_bytes(xml)
        files.append((path, config))
    return ServiceProviderRegistry.from_files(files)


def authn_request_xml(
    *,
    issuer: str = SP_ENTITY,
    request_id: str | None = None,
    issue_instant: datetime | None = None,
    destination: str | None = SSO_URL,
    acs_url: str | None = ACS_URL,
    acs_index: int | None = None,
    protocol_binding: str | None = BINDING_HTTP_POST,
    force_authn: bool | None = None,
    is_passive: bool | None = None,
    subject_xml: str = "",
    inner_xml: str = "",
    nameid_policy: str | None = NAMEID_EMAIL,
) -> bytes:
    attrs = [
        f'ID="{request_id or new_id()}"',
        'Version="2.0"',
        f'IssueInstant="{saml_datetime(issue_instant or now())}"',
    ]
    if destination is not None:
        attrs.append(f'Destination="{destination}"')
    if acs_url is not None:
        attrs.append(f'AssertionConsumerServiceURL="{acs_url}"')
    if acs_index is not None:
        attrs.append(f'AssertionConsumerServiceIndex="{acs_index}"')
    if protocol_binding is not None:
        attrs.append(f'ProtocolBinding="{protocol_binding}"')
    if force_authn is not None:
        attrs.append(f'ForceAuthn="{str(force_authn).lower()}"')
    if is_passive is not None:
        attrs.append(f'IsPassive="{str(is_passive).lower()}"')
    policy = (
        f'<samlp:NameIDPolicy Format="{nameid_policy}" AllowCreate="true"/>'
        if nameid_policy
        else ""
    )
    return (
        '<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
        + " ".join(attrs)
        + f"><saml:Issuer>{issuer}</saml:Issuer>{subject_xml}{policy}{inner_xml}"
        "</samlp:AuthnRequest>"
    ).encode()


def sign_sha1(xml: bytes, key: SigningKey) -> bytes:
    """Sign the root RSA-SHA1 / SHA-1 digest (signxml refuses SHA-1 by default; an attacker's
    or a legacy SP's signer does not), after Issuer like a real one."""
    from signxml.algorithms import SignatureConstructionMethod
    from signxml.signer import XMLSigner

    class LegacySigner(XMLSigner):
        def check_deprecated_methods(self) -> None:  # allow SHA-1, for this test only
            pass

    root = etree.fromstring(xml)
    placeholder = etree.Element("{http://www.w3.org/2000/09/xmldsig#}Signature")
    placeholder.set("Id", "placeholder")
    root.insert(1, placeholder)
    signer = LegacySigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm="rsa-sha1",
        digest_algorithm="sha1",
        c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#",
    )
    signed = signer.sign(root, key=key.private_key, cert=[key.certificate], id_attribute="ID")
    return bytes(etree.tostring(signed))


def sign_xml(xml: bytes, key: SigningKey) -> bytes:
    """Sign a document's root (enveloped, after Issuer) with ``key``, as an SP or IdP would."""
    root = etree.fromstring(xml)
    signed = SamlSigner(KeyRing([key])).sign(root)
    return bytes(etree.tostring(signed))


@dataclass
class Xmlsec1:
    """The independent ``xmlsec1`` command line (Debian package xmlsec1)."""

    workdir: Path

    def _write(self, name: str, data: bytes) -> Path:
        path = self.workdir / name
        path.write_bytes(data)
        return path

    def verify(self, xml: bytes, key: SigningKey, *, node_id: str | None = None) -> tuple[int, str]:
        cert = self._write("cert.pem", key.certificate.public_bytes(serialization.Encoding.PEM))
        doc = self._write("doc.xml", xml)
        argv = [
            "xmlsec1",
            "--verify",
            "--pubkey-cert-pem",
            str(cert),
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:protocol:Response",
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:protocol:AuthnRequest",
        ]
        if node_id:
            argv += ["--node-id", node_id]
        proc = subprocess.run([*argv, str(doc)], capture_output=True, text=True, timeout=60)
        return proc.returncode, proc.stderr

    def decrypt(self, xml: bytes, key: SigningKey) -> tuple[int, bytes, str]:
        pem = key.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        key_path = self._write("key.pem", pem)
        doc = self._write("enc.xml", xml)
        proc = subprocess.run(
            ["xmlsec1", "--decrypt", "--privkey-pem", str(key_path), str(doc)],
            capture_output=True,
            timeout=60,
        )
        return proc.returncode, proc.stdout, proc.stderr.decode(errors="replace")


def provider(registry: ServiceProviderRegistry, entity_id: str = SP_ENTITY) -> ServiceProvider:
    sp = registry.get(entity_id)
    assert sp is not None
    return sp


def shift(instant: datetime, seconds: float) -> datetime:
    return instant + timedelta(seconds=seconds)
