"""EncryptedAssertion (SAML core §2.3.4, §6) with XML Encryption 1.1, on ``cryptography``.

signxml (the library chosen for signatures, see ``docs/decisions.md``) does no encryption, so
this follows XML-Enc 1.1 directly with ``cryptography`` and lxml; the output is checked by an
independent decrypter (``xmlsec1 --decrypt``) in the tests.

Encrypting: a fresh content key per assertion; content ``aes256-gcm`` (XML-Enc 1.1 §5.2.4:
96-bit IV || ciphertext || 128-bit tag) by default, or ``aes128-cbc`` (IV || ciphertext,
XML-Enc padding) for SPs that lack GCM; key transport RSA-OAEP (``rsa-oaep-mgf1p``, the one
every SAML SP implements) to the SP's metadata encryption certificate, carried in
``ds:KeyInfo/xenc:EncryptedKey``.

Decrypting (for Responses from an upstream IdP): the same algorithms plus XML-Enc 1.1
``rsa-oaep`` with SHA-256; every failure is one :class:`EncryptionError` message (no padding
or tag oracle), and the plaintext goes through the hardened parser.
"""

from __future__ import annotations

import base64
import os
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from lxml import etree

from .constants import NS_DS, NS_SAML, NS_XENC, NS_XENC11
from .errors import EncryptionError, SamlError
from .xml_safety import DEFAULT_LIMITS, XmlLimits, parse_xml

__all__ = [
    "ContentAlgorithm",
    "ALG_AES256_GCM",
    "ALG_AES128_CBC",
    "ALG_RSA_OAEP_MGF1P",
    "encrypt_assertion",
    "decrypt_assertion",
]

ContentAlgorithm = Literal["aes256-gcm", "aes128-cbc"]
ALG_AES256_GCM = NS_XENC11 + "aes256-gcm"
ALG_AES128_GCM = NS_XENC11 + "aes128-gcm"
ALG_AES128_CBC = NS_XENC + "aes128-cbc"
ALG_AES256_CBC = NS_XENC + "aes256-cbc"
ALG_RSA_OAEP_MGF1P = NS_XENC + "rsa-oaep-mgf1p"
ALG_RSA_OAEP_11 = NS_XENC11 + "rsa-oaep"
_SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
_MGF1_SHA1 = NS_XENC11 + "mgf1sha1"
_MGF1_SHA256 = NS_XENC11 + "mgf1sha256"
_TYPE_ELEMENT = NS_XENC + "Element"
# rsa-oaep-mgf1p fixes SHA-1 as OAEP's mask hash: key transport, not a signature digest.
_OAEP_SHA1 = hashes.SHA1()  # noqa: S303
_KEY_SIZES = {ALG_AES256_GCM: 32, ALG_AES128_GCM: 16, ALG_AES128_CBC: 16, ALG_AES256_CBC: 32}

_X = f"{{{NS_XENC}}}"
_DS = f"{{{NS_DS}}}"
_SAML = f"{{{NS_SAML}}}"
_UNDECRYPTABLE = "EncryptedAssertion cannot be decrypted with our key"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encrypt_assertion(
    assertion: etree._Element,
    *,
    certificate: x509.Certificate,
    algorithm: ContentAlgorithm = "aes256-gcm",
) -> etree._Element:
    """``saml:EncryptedAssertion`` holding ``assertion`` (sign it first), to ``certificate``."""
    public = certificate.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise EncryptionError("the SP's encryption certificate is not an RSA key")
    plaintext = etree.tostring(assertion, encoding="UTF-8")
    if algorithm == "aes256-gcm":
        content_alg, key = ALG_AES256_GCM, AESGCM.generate_key(bit_length=256)
        iv = os.urandom(12)
        cipher_bytes = iv + AESGCM(key).encrypt(iv, plaintext, None)
    elif algorithm == "aes128-cbc":
        content_alg, key = ALG_AES128_CBC, os.urandom(16)
        iv = os.urandom(16)
        padder = sym_padding.PKCS7(128).padder()  # a valid XML-Enc padding (last byte = length)
        padded = padder.update(plaintext) + padder.finalize()
        encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        cipher_bytes = iv + encryptor.update(padded) + encryptor.finalize()
    else:
        raise EncryptionError(f"unsupported content encryption {algorithm!r}")
    wrapped = public.encrypt(
        key,
        padding.OAEP(mgf=padding.MGF1(_OAEP_SHA1), algorithm=_OAEP_SHA1, label=None),
    )
    encrypted = etree.Element(_SAML + "EncryptedAssertion", nsmap={"saml": NS_SAML})
    data = etree.SubElement(
        encrypted, _X + "EncryptedData", nsmap={"xenc": NS_XENC, "ds": NS_DS}, Type=_TYPE_ELEMENT
    )
    etree.SubElement(data, _X + "EncryptionMethod", Algorithm=content_alg)
    key_info = etree.SubElement(data, _DS + "KeyInfo")
    ek = etree.SubElement(key_info, _X + "EncryptedKey")
    method = etree.SubElement(ek, _X + "EncryptionMethod", Algorithm=ALG_RSA_OAEP_MGF1P)
    etree.SubElement(method, _DS + "DigestMethod", Algorithm=_SHA1)
    ek_cipher = etree.SubElement(ek, _X + "CipherData")
    etree.SubElement(ek_cipher, _X + "CipherValue").text = _b64(wrapped)
    cipher = etree.SubElement(data, _X + "CipherData")
    etree.SubElement(cipher, _X + "CipherValue").text = _b64(cipher_bytes)
    return encrypted


def _cipher_value(parent: etree._Element, what: str) -> bytes:
    node = parent.find(f"{_X}CipherData/{_X}CipherValue")
    if node is None or not node.text:
        raise EncryptionError(f"{what} has no CipherData/CipherValue")
    try:
        return base64.b64decode("".join(node.text.split()), validate=True)
    except ValueError as exc:
        raise EncryptionError(f"{what} CipherValue is not base64") from exc


def _oaep(method: etree._Element) -> padding.OAEP:
    alg = method.get("Algorithm")
    digest_node = method.find(_DS + "DigestMethod")
    digest_uri = digest_node.get("Algorithm") if digest_node is not None else _SHA1
    digests: dict[str | None, hashes.HashAlgorithm] = {
        _SHA1: _OAEP_SHA1,
        _SHA256: hashes.SHA256(),
    }
    if digest_uri not in digests:
        raise EncryptionError("unsupported OAEP digest")
    if alg == ALG_RSA_OAEP_MGF1P:
        return padding.OAEP(mgf=padding.MGF1(_OAEP_SHA1), algorithm=digests[digest_uri], label=None)
    if alg == ALG_RSA_OAEP_11:
        mgf_node = method.find(f"{{{NS_XENC11}}}MGF")
        mgf_uri = mgf_node.get("Algorithm") if mgf_node is not None else _MGF1_SHA1
        mgfs: dict[str | None, hashes.HashAlgorithm] = {
            _MGF1_SHA1: _OAEP_SHA1,
            _MGF1_SHA256: hashes.SHA256(),
        }
        if mgf_uri not in mgfs:
            raise EncryptionError("unsupported OAEP MGF")
        return padding.OAEP(
            mgf=padding.MGF1(mgfs[mgf_uri]), algorithm=digests[digest_uri], label=None
        )
    raise EncryptionError("unsupported key transport algorithm (RSA-OAEP only)")


def decrypt_assertion(
    encrypted: etree._Element,
    *,
    private_key: rsa.RSAPrivateKey,
    limits: XmlLimits = DEFAULT_LIMITS,
) -> etree._Element:
    """The ``saml:Assertion`` inside ``saml:EncryptedAssertion``, parsed with the hardened parser.

    Raises :class:`EncryptionError` for any structural, algorithm or decryption failure.
    """
    if encrypted.tag != _SAML + "EncryptedAssertion":
        raise EncryptionError("expected saml:EncryptedAssertion")
    data = encrypted.find(_X + "EncryptedData")
    if data is None:
        raise EncryptionError("EncryptedAssertion has no xenc:EncryptedData")
    method = data.find(_X + "EncryptionMethod")
    content_alg = method.get("Algorithm") if method is not None else None
    if content_alg not in _KEY_SIZES:
        raise EncryptionError("unsupported content encryption algorithm")
    key_node = data.find(f"{_DS}KeyInfo/{_X}EncryptedKey")
    if key_node is None:
        key_node = encrypted.find(_X + "EncryptedKey")  # some IdPs put it beside EncryptedData
    if key_node is None:
        raise EncryptionError("EncryptedAssertion carries no xenc:EncryptedKey")
    key_method = key_node.find(_X + "EncryptionMethod")
    if key_method is None:
        raise EncryptionError("EncryptedKey has no EncryptionMethod")
    oaep = _oaep(key_method)
    wrapped = _cipher_value(key_node, "EncryptedKey")
    cipher_bytes = _cipher_value(data, "EncryptedData")
    if len(cipher_bytes) > limits.max_bytes + 64:
        raise EncryptionError("EncryptedData is larger than the message limit")
    try:
        key = private_key.decrypt(wrapped, oaep)
        if len(key) != _KEY_SIZES[str(content_alg)]:
            raise ValueError("content key size")
        if content_alg in (ALG_AES256_GCM, ALG_AES128_GCM):
            plaintext = AESGCM(key).decrypt(cipher_bytes[:12], cipher_bytes[12:], None)
        else:
            iv, body = cipher_bytes[:16], cipher_bytes[16:]
            if not body or len(body) % 16:
                raise ValueError("CBC length")
            decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
            padded = decryptor.update(body) + decryptor.finalize()
            pad = padded[-1]
            if not 1 <= pad <= 16:
                raise ValueError("padding")
            plaintext = padded[:-pad]
    except Exception as exc:  # one message for every failure: no oracle
        raise EncryptionError(_UNDECRYPTABLE) from exc
    authenticated = content_alg in (ALG_AES256_GCM, ALG_AES128_GCM)
    try:
        assertion = parse_xml(plaintext, limits=limits)
    except SamlError as exc:
        if not authenticated:
            # CBC has no integrity: a tampered block that leaves valid padding decrypts to
            # garbage. Telling "bad padding" from "bad XML" would be a padding oracle.
            raise EncryptionError(_UNDECRYPTABLE) from exc
        raise EncryptionError(f"decrypted assertion is not acceptable XML: {exc}") from exc
    if assertion.tag != _SAML + "Assertion":
        if not authenticated:
            raise EncryptionError(_UNDECRYPTABLE)
        raise EncryptionError("EncryptedAssertion does not hold a saml:Assertion")
    return assertion
