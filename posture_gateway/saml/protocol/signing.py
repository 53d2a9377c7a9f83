"""Enveloped XML signatures for SAML (XML-DSig 1.1, SAML core §5) with signxml.

Signing: RSA-SHA256, SHA-256 digests, exclusive c14n, one Reference to the element's ``ID``,
the ``ds:Signature`` placed where the SAML schema requires it (right after ``saml:Issuer``),
the certificate in ``KeyInfo/X509Data``. :class:`SamlSigner` signs with the **active RS256
key of the gateway's key ring** (a loaded ``cryptography`` key object: no PEM on the hot path)
and lists every RSA certificate the ring still publishes, for IdP metadata.

Speed (docs/performance.md, "SAML signing"): one signxml signer per process, the KeyInfo
built once per certificate, and an element that is the root of its own tree is signed **in
place** (:class:`_InPlaceSigner`: signxml without its two serialise/re-parse copies of the
input per signature); the output is byte-identical to signxml's default path (a test checks),
and the first in-place signature made with each certificate is verified before it is handed
out, so a signxml upgrade that broke the in-place path fails closed.

Verification (:func:`verify_enveloped`): the signature must be a direct child of the element,
made by one of the trusted certificates (from metadata: never the one the message carries),
with RSA-SHA256/384/512 or ECDSA-SHA256 and a SHA-256/384/512 digest (SHA-1 is refused), one
Reference, pointing at that element's ``ID``, and no ID may occur twice in the document. The
caller gets back **the signed element as signxml re-parsed it from the canonical bytes that
were digested** — never the original tree — so what is read is what was signed (the defence
against signature wrapping, "see what is signed").
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree
from signxml.algorithms import DigestAlgorithm, SignatureConstructionMethod, SignatureMethod
from signxml.exceptions import InvalidInput, SignXMLException
from signxml.signer import XMLSigner
from signxml.verifier import SignatureConfiguration, XMLVerifier

from posture_gateway.signing.key_ring import KeyRing, KeyRingError, SigningKey

from .constants import (
    ACCEPTED_SIGNATURE_ALGORITHMS,
    C14N_EXCLUSIVE,
    NS_DS,
    NS_SAML,
)
from .errors import SignatureError, SignatureMissing, UnsupportedAlgorithm
from .xml_safety import hardened_parser

__all__ = [
    "SamlSigner",
    "verify_enveloped",
    "check_unique_ids",
    "ACCEPTED_DIGESTS",
]

_DS = f"{{{NS_DS}}}"
_ISSUER = f"{{{NS_SAML}}}Issuer"
ACCEPTED_DIGESTS = frozenset(
    {
        "http://www.w3.org/2001/04/xmlenc#sha256",
        "http://www.w3.org/2001/04/xmldsig-more#sha384",
        "http://www.w3.org/2001/04/xmlenc#sha512",
    }
)
_VERIFY_CONFIG = SignatureConfiguration(
    require_x509=True,
    location="./",  # the Signature is a direct child of the element it signs
    expect_references=1,
    signature_methods=frozenset(
        {
            SignatureMethod.RSA_SHA256,
            SignatureMethod.RSA_SHA384,
            SignatureMethod.RSA_SHA512,
            SignatureMethod.ECDSA_SHA256,
        }
    ),
    digest_algorithms=frozenset(
        {DigestAlgorithm.SHA256, DigestAlgorithm.SHA384, DigestAlgorithm.SHA512}
    ),
)


class SamlSigner:
    """Signs SAML elements with the key ring's active RS256 key.

    Built once at start (``SamlSigner(key_ring)``); each :meth:`sign` asks the ring for its
    active key, so a rotation (even by another process) is picked up without a restart.
    """

    def __init__(self, key_ring: KeyRing) -> None:
        if key_ring is None:
            raise ValueError("SamlSigner needs a key ring")
        self._ring = key_ring
        self._key_info_template: tuple[x509.Certificate, etree._Element] | None = None
        self._checked: x509.Certificate | None = None  # see _check_once

    def active_key(self) -> SigningKey:
        """The RSA key new signatures are made with (raises KeyRingError when there is none)."""
        key = self._ring.active("RS256")
        if not isinstance(key.private_key, rsa.RSAPrivateKey):
            raise KeyRingError(f"key {key.kid} is not an RSA key")
        return key

    def certificates(self) -> tuple[x509.Certificate, ...]:
        """Every RSA certificate the ring still publishes (active first, then retiring)."""
        published = [k for k in self._ring.published() if k.alg == "RS256"]
        published.sort(key=lambda k: (k.retire_after is not None, -k.created_at.timestamp()))
        return tuple(k.certificate for k in published)

    def sign(self, element: etree._Element, *, reference_id: str | None = None) -> etree._Element:
        """Sign ``element`` (enveloped, over its ``ID``); returns the signed element.

        The ``ds:Signature`` goes right after the element's ``saml:Issuer`` child (the position
        the Response, Assertion and AuthnRequest schemas require), or first when it has none.
        An element that is the root of its own tree (everything :mod:`.response` builds) is
        signed in place and returned; any other element is signed on a copy, as signxml does
        by default. Either way: use the returned element.
        """
        key = self.active_key()
        element_id = element.get("ID")
        if not element_id or (reference_id is not None and reference_id != element_id):
            raise SignatureError("SamlSigner signs an element over its own ID")
        if element.find(_DS + "Signature") is not None:
            # signed in place: the element passed in IS the signed one; a second enveloped
            # signature beside the first would be refused by every verifier (ours included)
            raise SignatureError("the element is already signed")
        placeholder = etree.Element(_DS + "Signature", nsmap={"ds": NS_DS})
        placeholder.set("Id", "placeholder")
        issuer = element.find(_ISSUER)
        if issuer is not None:
            issuer.addnext(placeholder)
        else:
            element.insert(0, placeholder)
        # No reference_uri: signxml then references the signed root by its ID ("#<ID>").
        # KeyInfo is the active key's, pre-built once per key (no PEM encoding per call).
        key_info = self._key_info(key)
        if element.getparent() is None:
            _IN_PLACE.sign(element, key=key.private_key, key_info=key_info, id_attribute="ID")
            # signxml filled the placeholder in and took it out of the tree (the element it
            # digested must not contain it: the enveloped-signature transform); put it back.
            if placeholder.getparent() is not None or len(placeholder) != 3:
                raise SignatureError("signxml did not build the signature as expected")
            if issuer is not None:
                issuer.addnext(placeholder)
            else:
                element.insert(0, placeholder)
            self._check_once(element, key)
            return element
        signed: etree._Element = _COPYING.sign(
            element, key=key.private_key, key_info=key_info, id_attribute="ID"
        )
        return signed

    def _key_info(self, key: SigningKey) -> etree._Element:
        """A fresh ``ds:KeyInfo/X509Data/X509Certificate`` for ``key``, copied from a template
        built once per certificate (the same text signxml writes: the PEM body)."""
        cached = self._key_info_template
        if cached is None or cached[0] is not key.certificate:
            template = etree.Element(_DS + "KeyInfo", nsmap={"ds": NS_DS})
            x509_data = etree.SubElement(template, _DS + "X509Data")
            pem = key.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
            # the PEM body between the BEGIN/END lines, newlines kept (what signxml writes)
            body = "".join(pem.splitlines(keepends=True)[1:-1])
            etree.SubElement(x509_data, _DS + "X509Certificate").text = body
            cached = (key.certificate, template)
            self._key_info_template = cached
        return copy.deepcopy(cached[1])

    def _check_once(self, signed: etree._Element, key: SigningKey) -> None:
        """Verify the first in-place signature made with each certificate (signxml's own
        verifier, from the serialised bytes, as an SP sees them).

        The in-place signer leans on how signxml's ``_unpack`` treats the placeholder; if a
        signxml upgrade changed that, this refuses to hand out a single bad signature
        (fail closed) instead of leaving SPs to reject every login.
        """
        if self._checked is key.certificate:
            return
        try:
            XMLVerifier().verify(
                etree.tostring(signed),
                x509_cert=key.certificate,
                parser=hardened_parser(),
                id_attribute="ID",
                # the signature is what is checked here, not the certificate's dates
                # (signing with an expired certificate is the SP's to refuse, as before)
                expect_config=dataclasses.replace(
                    _VERIFY_CONFIG, verification_time=key.certificate.not_valid_before_utc
                ),
            )
        except (SignXMLException, InvalidInput, ValueError, etree.LxmlError) as exc:
            raise SignatureError(
                f"self-check: our own signature does not verify ({str(exc)[:160]})"
            ) from exc
        self._checked = key.certificate


class _InPlaceSigner(XMLSigner):
    """signxml's enveloped signer without its two defensive copies of the input.

    ``XMLSigner`` serialises and re-parses the element twice per signature (one copy to put
    the signature in, one to digest), so that the caller's tree is never touched and a
    namespace inherited from a parent cannot leak into the canonical form. For an element
    that is the root of a tree we just built, neither reason applies: this subclass hands
    signxml the element itself. signxml then removes the placeholder from it (the enveloped
    transform), digests it, and fills the placeholder with SignedInfo, SignatureValue and
    KeyInfo; :meth:`SamlSigner.sign` puts the filled placeholder back. Everything else —
    algorithms, canonicalisation, digest, RSA — is signxml's own code.
    """

    def get_root(self, data: Any) -> Any:
        if not isinstance(data, etree._Element) or data.getparent() is not None:
            raise InvalidInput("the in-place signer signs only the root of a tree")
        return data

    def _unpack(self, data: Any, references: Any) -> Any:
        sig_root, doc_root, c14n_inputs, references = super()._unpack(data, references)
        # signxml removes the placeholder from its digest copy only; with no copy, take it
        # out of the element here, before the digest (it is put back once filled in).
        parent = sig_root.getparent()
        if parent is not None:
            parent.remove(sig_root)
        return sig_root, doc_root, c14n_inputs, references


def _signer(cls: type[XMLSigner]) -> XMLSigner:
    # One instance per process, shared by threads: XMLSigner.sign keeps no per-call state on
    # the instance (it only sets id_attributes, always to the same value here).
    return cls(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm=SignatureMethod.RSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=C14N_EXCLUSIVE,
    )


_IN_PLACE = _signer(_InPlaceSigner)
_COPYING = _signer(XMLSigner)


def check_unique_ids(root: etree._Element) -> None:
    """Refuse a document in which two elements carry the same ``ID`` (or ``AssertionID``/``Id``).

    A duplicate ID lets a signature's Reference resolve to one element while the reader uses
    the other (a classic signature-wrapping variant).
    """
    seen: set[str] = set()
    for node in root.iter():
        if not isinstance(node.tag, str):
            continue
        for attr in ("ID", "AssertionID", "Id"):
            value = node.get(attr)
            if value is None:
                continue
            if value in seen:
                raise SignatureError(f"ID {value[:64]!r} occurs more than once in the document")
            seen.add(value)


def _algorithm_check(signature: etree._Element) -> None:
    method = signature.find(f"{_DS}SignedInfo/{_DS}SignatureMethod")
    if method is None:
        raise SignatureError("ds:Signature has no SignedInfo/SignatureMethod")
    alg = method.get("Algorithm") or ""
    if alg not in ACCEPTED_SIGNATURE_ALGORITHMS:
        raise UnsupportedAlgorithm(
            f"signature algorithm {alg!r} is not accepted "
            "(RSA-SHA256/384/512 or ECDSA-SHA256 only; SHA-1 is refused)"
        )
    for digest in signature.iterfind(f"{_DS}SignedInfo/{_DS}Reference/{_DS}DigestMethod"):
        if (digest.get("Algorithm") or "") not in ACCEPTED_DIGESTS:
            raise UnsupportedAlgorithm(
                f"digest algorithm {digest.get('Algorithm')!r} is not accepted "
                "(SHA-256/384/512 only; SHA-1 is refused)"
            )


def verify_enveloped(
    element: etree._Element,
    *,
    certificates: Sequence[x509.Certificate],
    what: str,
) -> etree._Element:
    """Verify ``element``'s own enveloped signature; return the signed element as signed.

    ``certificates`` are the trusted ones (from metadata); the signature must verify with one
    of them. Raises :class:`SignatureMissing` when ``element`` has no ``ds:Signature`` child,
    :class:`UnsupportedAlgorithm` for SHA-1 or unknown algorithms, :class:`SignatureError`
    otherwise (bad signature, untrusted key, several signatures, Reference not to this
    element). ``what`` names the element in messages ("AuthnRequest", "Assertion").
    """
    signatures = element.findall(_DS + "Signature")
    if not signatures:
        raise SignatureMissing(f"{what} is not signed")
    if len(signatures) > 1:
        raise SignatureError(f"{what} carries more than one ds:Signature")
    if not certificates:
        raise SignatureError(f"no trusted certificate to verify the {what} signature with")
    _algorithm_check(signatures[0])
    check_unique_ids(element.getroottree().getroot())
    element_id = element.get("ID")
    if not element_id:
        raise SignatureError(f"signed {what} has no ID")
    references = signatures[0].findall(f"{_DS}SignedInfo/{_DS}Reference")
    if len(references) != 1 or references[0].get("URI") != "#" + element_id:
        raise SignatureError(f"the {what} signature does not reference the {what} itself")
    last: Exception | None = None
    for cert in certificates:
        try:
            result: Any = XMLVerifier().verify(
                element,
                x509_cert=cert,
                parser=hardened_parser(),
                id_attribute="ID",
                expect_config=_VERIFY_CONFIG,
            )
        except (SignXMLException, InvalidInput, ValueError, etree.LxmlError) as exc:
            last = exc
            continue
        signed = result.signed_xml
        if signed is None or signed.tag != element.tag or signed.get("ID") != element_id:
            raise SignatureError(f"the {what} signature covers a different element")
        return signed  # type: ignore[no-any-return]
    reason = str(last) if last else "no certificate matched"
    raise SignatureError(
        f"{what} signature does not verify with any trusted certificate ({reason[:160]})"
    )
