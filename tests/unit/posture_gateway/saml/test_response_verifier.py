"""verify_response (the gateway as the SP of an upstream SAML IdP): round trips, and every
signature-wrapping, replay-window and addressing attack we know of is refused."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path

import pytest
from lxml import etree

from posture_gateway.saml.protocol.constants import NS_DS, NS_SAML, NS_SAMLP, STATUS_RESPONDER
from posture_gateway.saml.protocol.errors import (
    DestinationMismatch,
    MessageError,
    SignatureError,
    SignatureMissing,
    StaleMessage,
    StatusNotSuccess,
)
from posture_gateway.saml.protocol.response import (
    SamlStatus,
    build_error_response,
    build_response,
)
from posture_gateway.saml.protocol.response_verifier import verify_response
from posture_gateway.saml.protocol.service_providers import ServiceProviderConfig
from posture_gateway.saml.protocol.signing import SamlSigner
from posture_gateway.signing.key_ring import KeyRing

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
A = f"{{{NS_SAML}}}Assertion"


@pytest.fixture
def upstream(tmp_path: Path, sp_key, signer):
    """An upstream IdP (our own builder, keyed with idp_key) issuing to us as the SP."""

    def issue(*, name_id: str = "alice@corp.com", **config) -> bytes:
        xml = sp_metadata_xml(signing=sp_key, encryption=sp_key)
        sp = provider(registry_for(tmp_path, (xml, ServiceProviderConfig(**config))))
        t = now()
        return build_response(
            idp_entity_id=IDP_ENTITY,
            sp=sp,
            acs_url=ACS_URL,
            in_response_to="_ours",
            name_id=name_id,
            session_index="_s",
            authn_instant=t,
            signer=signer,
            now=t,
            attributes={"email": "alice@corp.com", "groups": ["a", "b"]},
        ).xml

    return issue


def verify(xml: bytes, idp_key, **kw):
    args = {
        "idp_certs": [idp_key.certificate],
        "expected_issuer": IDP_ENTITY,
        "expected_audience": SP_ENTITY,
        "expected_recipient": ACS_URL,
        "expected_in_response_to": "_ours",
        "now": now(),
    }
    args.update(kw)
    return verify_response(xml, **args)


@pytest.mark.parametrize(
    "config",
    [{}, {"sign_response": False}, {"sign_assertion": False}],
    ids=["both-signed", "assertion-signed", "response-signed"],
)
def test_round_trip(upstream, idp_key, config) -> None:
    result = verify(upstream(**config), idp_key)
    assert result.name_id == "alice@corp.com"
    assert result.issuer == IDP_ENTITY and result.session_index == "_s"
    assert result.attributes == {"email": ("alice@corp.com",), "groups": ("a", "b")}
    assert result.not_on_or_after > now()


def test_encrypted_assertion_round_trip(upstream, idp_key, sp_key) -> None:
    xml = upstream(encrypt_assertion=True)
    assert verify(xml, idp_key, decryption_key=sp_key.private_key).name_id == "alice@corp.com"
    with pytest.raises(MessageError, match="no key"):
        verify(xml, idp_key)


def test_untrusted_signer_is_refused(upstream, other_key, idp_key) -> None:
    with pytest.raises(SignatureError, match="trusted"):
        verify(upstream(), idp_key, idp_certs=[other_key.certificate])
    forged = SamlSigner(KeyRing([other_key]))
    root = etree.fromstring(upstream(sign_response=False))
    assertion = root.find("saml:Assertion", NS)
    assert assertion is not None
    assertion.remove(assertion.find("ds:Signature", NS))
    root.replace(assertion, forged.sign(assertion))
    with pytest.raises(SignatureError):
        verify(etree.tostring(root), idp_key)


def test_unsigned_assertion_is_refused(upstream, idp_key) -> None:
    root = etree.fromstring(upstream(sign_response=False))
    assertion = root.find("saml:Assertion", NS)
    assert assertion is not None
    assertion.remove(assertion.find("ds:Signature", NS))
    with pytest.raises(SignatureMissing, match="neither"):
        verify(etree.tostring(root), idp_key)


def test_tampered_nameid_is_refused(upstream, idp_key) -> None:
    for config in ({}, {"sign_response": False}, {"sign_assertion": False}):
        xml = upstream(**config).replace(
            b"alice@corp.com</saml:NameID>", b"mallory@corp.com</saml:NameID>"
        )
        with pytest.raises(SignatureError):
            verify(xml, idp_key)


def _evil_copy(signed_assertion: etree._Element, *, new_id: str | None = None) -> etree._Element:
    evil = copy.deepcopy(signed_assertion)
    sig = evil.find("ds:Signature", NS)
    if sig is not None:
        evil.remove(sig)
    nameid = evil.find("saml:Subject/saml:NameID", NS)
    assert nameid is not None
    nameid.text = "admin@corp.com"
    if new_id:
        evil.set("ID", new_id)
    return evil


def test_xsw_signed_assertion_moved_into_extensions(upstream, idp_key) -> None:
    root = etree.fromstring(upstream(sign_response=False))
    signed = root.find("saml:Assertion", NS)
    assert signed is not None
    root.remove(signed)
    ext = etree.Element(f"{{{NS_SAMLP}}}Extensions")
    ext.append(signed)
    root.insert(1, ext)
    root.append(_evil_copy(signed, new_id="_evil"))
    with pytest.raises(MessageError, match="exactly one assertion"):
        verify(etree.tostring(root), idp_key)


def test_xsw_signed_assertion_moved_into_signature_object(upstream, idp_key) -> None:
    root = etree.fromstring(upstream(sign_response=False))
    signed = root.find("saml:Assertion", NS)
    assert signed is not None
    evil = _evil_copy(signed)  # same ID as the signed one, now hidden in ds:Object
    sig = signed.find("ds:Signature", NS)
    assert sig is not None
    signed.remove(sig)
    obj = etree.SubElement(sig, f"{{{NS_DS}}}Object")
    obj.append(signed)
    evil.insert(1, sig)
    root.append(evil)  # the signed original left the Response with its Signature
    with pytest.raises((MessageError, SignatureError)):
        verify(etree.tostring(root), idp_key)


def test_xsw_response_signature_wrapped_around_evil_response(upstream, idp_key) -> None:
    # The genuinely signed Response hidden in Extensions of an evil unsigned Response.
    genuine = etree.fromstring(upstream(sign_assertion=False))
    evil = copy.deepcopy(genuine)
    evil.set("ID", "_evilresponse")
    evil.remove(evil.find("ds:Signature", NS))
    nameid = evil.find("saml:Assertion/saml:Subject/saml:NameID", NS)
    assert nameid is not None
    nameid.text = "admin@corp.com"
    ext = etree.Element(f"{{{NS_SAMLP}}}Extensions")
    ext.append(genuine)
    evil.insert(1, ext)
    with pytest.raises((MessageError, SignatureError)):
        verify(etree.tostring(evil), idp_key)


def test_duplicate_ids_are_refused(upstream, idp_key) -> None:
    root = etree.fromstring(upstream(sign_response=False))
    signed = root.find("saml:Assertion", NS)
    assert signed is not None
    ext = etree.Element(f"{{{NS_SAMLP}}}Extensions")
    etree.SubElement(ext, "{urn:x}Thing", ID=signed.get("ID"))
    root.insert(1, ext)
    with pytest.raises(SignatureError, match="more than once"):
        verify(etree.tostring(root), idp_key)


def test_signature_over_a_different_element_is_refused(upstream, idp_key, signer) -> None:
    root = etree.fromstring(upstream(sign_response=False))
    target = root.find("saml:Assertion", NS)
    assert target is not None
    target.remove(target.find("ds:Signature", NS))
    # a genuine IdP signature, but over another element (its Reference is "#_other")
    other = etree.fromstring(
        f'<saml:Assertion xmlns:saml="{NS_SAML}" ID="_other"><saml:Issuer>{IDP_ENTITY}'
        "</saml:Issuer></saml:Assertion>"
    )
    signed_other = signer.sign(other)
    target.insert(1, signed_other.find("ds:Signature", NS))
    with pytest.raises(SignatureError, match="reference"):
        verify(etree.tostring(root), idp_key)


def test_a_second_assertion_is_refused(upstream, idp_key) -> None:
    first = etree.fromstring(upstream(sign_response=False))
    second = etree.fromstring(upstream(sign_response=False, name_id="bob@corp.com"))
    first.append(second.find("saml:Assertion", NS))
    with pytest.raises(MessageError, match="exactly one"):
        verify(etree.tostring(first), idp_key)


def test_comment_injection_in_signed_nameid_reads_the_whole_value(upstream, idp_key) -> None:
    for config in ({"sign_response": False}, {"sign_assertion": False}, {}):
        xml = upstream(name_id="alice@corp.com.evil.com", **config)
        injected = xml.replace(b"alice@corp.com.evil.com<", b"alice@corp.com<!---->.evil.com<")
        assert injected != xml
        assert verify(injected, idp_key).name_id == "alice@corp.com.evil.com"


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ({"expected_audience": "https://other-sp"}, DestinationMismatch),
        ({"expected_recipient": "https://other/acs"}, DestinationMismatch),
        ({"expected_in_response_to": "_other"}, MessageError),
        ({"expected_in_response_to": None}, MessageError),
        ({"expected_issuer": "https://other-idp"}, MessageError),
        ({"now": timedelta(minutes=10)}, StaleMessage),
        ({"now": -timedelta(minutes=10)}, StaleMessage),
    ],
    ids=["audience", "recipient", "in-response-to", "unsolicited", "issuer", "expired", "future"],
)
def test_addressing_and_time_checks(upstream, idp_key, override, error) -> None:
    # A time override is an offset from the moment the test runs (not from collection time).
    if isinstance(override.get("now"), timedelta):
        override = {**override, "now": now() + override["now"]}
    with pytest.raises(error):
        verify(upstream(), idp_key, **override)


def test_status_not_success_carries_the_codes(signer, idp_key) -> None:
    issued = build_error_response(
        idp_entity_id=IDP_ENTITY,
        destination=ACS_URL,
        in_response_to="_ours",
        status=SamlStatus.AUTHN_FAILED,
        now=now(),
        signer=signer,
    )
    with pytest.raises(StatusNotSuccess) as info:
        verify(issued.xml, idp_key)
    assert info.value.status == STATUS_RESPONDER
    assert info.value.sub_status is not None and info.value.sub_status.endswith("AuthnFailed")


def test_wrong_root_and_garbage(idp_key) -> None:
    with pytest.raises(MessageError):
        verify(b"<samlp:AuthnRequest xmlns:samlp='urn:oasis:names:tc:SAML:2.0:protocol'/>", idp_key)
    with pytest.raises(MessageError):
        verify(b"<samlp:Response xmlns:samlp='urn:oasis:names:tc:SAML:2.0:protocol'/>", idp_key)
    success_without_assertion = (
        f"<samlp:Response xmlns:samlp='{NS_SAMLP}' ID='_r' Version='2.0' InResponseTo='_ours'>"
        f"<samlp:Status><samlp:StatusCode Value='urn:oasis:names:tc:SAML:2.0:status:Success'/>"
        "</samlp:Status></samlp:Response>"
    ).encode()
    with pytest.raises(MessageError, match="exactly one"):
        verify(success_without_assertion, idp_key)


def test_expired_idp_certificate_is_refused(tmp_path: Path, sp_key) -> None:
    from datetime import UTC, datetime

    from posture_gateway.signing.key_ring import generate_signing_key

    old = generate_signing_key("RS256", now=datetime(2010, 1, 1, tzinfo=UTC))  # expired 2020
    xml = sp_metadata_xml(signing=sp_key)
    sp = provider(registry_for(tmp_path, (xml, ServiceProviderConfig())))
    t = now()
    issued = build_response(
        idp_entity_id=IDP_ENTITY,
        sp=sp,
        acs_url=ACS_URL,
        in_response_to="_ours",
        name_id="alice@corp.com",
        session_index="_s",
        authn_instant=t,
        signer=SamlSigner(KeyRing([old])),
        now=t,
    )
    with pytest.raises(SignatureError):
        verify(issued.xml, old)


def test_assertions_signed_before_a_rotation_still_verify(
    tmp_path: Path, upstream, idp_key
) -> None:
    from posture_gateway.signing.key_ring import generate_signing_key

    xml = upstream()  # signed with idp_key
    newer = generate_signing_key("RS256")
    # the metadata after rotation lists the new key first and the retiring one second
    assert verify(xml, idp_key, idp_certs=[newer.certificate, idp_key.certificate]).name_id


def test_tampered_ciphertext_is_one_uniform_encryption_error(
    upstream, idp_key, sp_key, other_key
) -> None:
    import base64 as b64

    from posture_gateway.saml.protocol.errors import EncryptionError

    for algorithm in ("aes256-gcm", "aes128-cbc"):
        # Response unsigned (else its signature catches the change first): decryption fails
        root = etree.fromstring(
            upstream(encrypt_assertion=True, encryption_algorithm=algorithm, sign_response=False)
        )
        values = root.findall(".//{http://www.w3.org/2001/04/xmlenc#}CipherValue")
        assert len(values) == 2  # the wrapped key, then the content
        content = bytearray(b64.b64decode(values[1].text))
        content[-1] ^= 1
        values[1].text = b64.b64encode(bytes(content)).decode()
        with pytest.raises(EncryptionError, match="cannot be decrypted with our key"):
            verify(etree.tostring(root), idp_key, decryption_key=sp_key.private_key)
        fresh = upstream(encrypt_assertion=True, encryption_algorithm=algorithm)
        with pytest.raises(EncryptionError, match="cannot be decrypted with our key"):
            verify(fresh, idp_key, decryption_key=other_key.private_key)


def _cbc_encrypted(plaintext: bytes, certificate, *, pad: bytes | None = None) -> etree._Element:
    """An EncryptedAssertion whose AES-128-CBC content is ``plaintext`` (PKCS#7-padded unless
    ``pad`` is given), with the content key wrapped to ``certificate``: what an attacker who
    flips ciphertext blocks can make us decrypt."""
    import base64 as b64
    import os

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding as asym
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from posture_gateway.saml.protocol.encryption import encrypt_assertion

    key, iv = os.urandom(16), os.urandom(16)
    if pad is None:
        n = 16 - len(plaintext) % 16
        pad = bytes([n]) * n
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    content = iv + encryptor.update(plaintext + pad) + encryptor.finalize()
    sha1 = hashes.SHA1()  # noqa: S303 - rsa-oaep-mgf1p's fixed mask hash, not a signature
    wrapped = certificate.public_key().encrypt(
        key, asym.OAEP(mgf=asym.MGF1(sha1), algorithm=sha1, label=None)
    )
    encrypted = encrypt_assertion(
        etree.Element(f"{{{NS_SAML}}}Assertion"), certificate=certificate, algorithm="aes128-cbc"
    )
    values = encrypted.findall(".//{http://www.w3.org/2001/04/xmlenc#}CipherValue")
    values[0].text = b64.b64encode(wrapped).decode()
    values[1].text = b64.b64encode(content).decode()
    return encrypted


@pytest.mark.parametrize(
    ("plaintext", "pad"),
    [
        (b"\x8f\x01 not xml at all \xfe", None),  # valid padding, garbage inside
        (b"<saml:Assertion xmlns:saml='urn:oasis:names:tc:SAML:2.0:assertion'>", None),  # cut
        (b"<other xmlns='urn:x'/>", None),  # well-formed, not an Assertion
        (b"<a/>", b"\x00" * 12),  # bad padding: zero
        (b"<a/>", b"\x11" * 12),  # bad padding: longer than a block
    ],
)
def test_cbc_content_gives_no_padding_oracle(sp_key, plaintext: bytes, pad: bytes | None) -> None:
    """Bad padding, garbage and a wrong root all read the same under CBC, which has no integrity:
    a different message for each would let an attacker decrypt it block by block."""
    from posture_gateway.saml.protocol.encryption import decrypt_assertion
    from posture_gateway.saml.protocol.errors import EncryptionError

    encrypted = _cbc_encrypted(plaintext, sp_key.certificate, pad=pad)
    with pytest.raises(EncryptionError) as caught:
        decrypt_assertion(encrypted, private_key=sp_key.private_key)
    assert str(caught.value) == "EncryptedAssertion cannot be decrypted with our key"


def test_cbc_round_trip_still_decrypts(sp_key) -> None:
    from posture_gateway.saml.protocol.encryption import decrypt_assertion

    plaintext = f"<saml:Assertion xmlns:saml='{NS_SAML}' ID='_a'/>".encode()
    assertion = decrypt_assertion(
        _cbc_encrypted(plaintext, sp_key.certificate), private_key=sp_key.private_key
    )
    assert assertion.get("ID") == "_a"


def test_gcm_content_that_is_not_an_assertion_says_so(sp_key) -> None:
    """GCM is authenticated: what decrypts came from the key holder, so the precise reason helps
    the admin and tells an attacker nothing."""
    from posture_gateway.saml.protocol.encryption import decrypt_assertion, encrypt_assertion
    from posture_gateway.saml.protocol.errors import EncryptionError

    encrypted = encrypt_assertion(etree.Element("{urn:x}other"), certificate=sp_key.certificate)
    with pytest.raises(EncryptionError, match="does not hold a saml:Assertion"):
        decrypt_assertion(encrypted, private_key=sp_key.private_key)


def test_sha1_signed_response_is_refused(upstream, idp_key) -> None:
    from posture_gateway.saml.protocol.errors import UnsupportedAlgorithm

    from .saml_factories import sign_sha1

    root = etree.fromstring(upstream(sign_response=False, sign_assertion=True))
    root.find("saml:Assertion", NS).remove(root.find("saml:Assertion/ds:Signature", NS))
    with pytest.raises(UnsupportedAlgorithm):
        verify(sign_sha1(etree.tostring(root), idp_key), idp_key)
