"""HTTP-Redirect and HTTP-POST bindings: the query signature over the raw octets, SigAlg
policy, repeated parameters, the auto-submitting form."""

from __future__ import annotations

import base64
import re
import zlib
from urllib.parse import quote, urlsplit

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding

from posture_gateway.saml.protocol.bindings import (
    check_relay_state,
    decode_post,
    decode_redirect,
    encode_redirect,
    post_form,
    verify_redirect_signature,
)
from posture_gateway.saml.protocol.constants import SIG_ECDSA_SHA256, SIG_RSA_SHA1
from posture_gateway.saml.protocol.errors import (
    BindingError,
    DeflateBomb,
    SignatureError,
    SignatureMissing,
    UnsupportedAlgorithm,
)
from posture_gateway.signing.key_ring import generate_signing_key

XML = b'<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_x"/>'


def query_of(url: str) -> str:
    return urlsplit(url).query


def test_redirect_round_trip_unsigned() -> None:
    url = encode_redirect("https://idp/sso", XML, relay_state="state 1/2&3")
    message = decode_redirect(query_of(url))
    assert message.kind == "SAMLRequest"
    assert message.xml == XML
    assert message.relay_state == "state 1/2&3"
    assert not message.is_signed
    with pytest.raises(SignatureMissing):
        verify_redirect_signature(message, [])


def test_redirect_signature_verifies_over_raw_octets(sp_key, other_key) -> None:
    url = encode_redirect("https://idp/sso", XML, relay_state="rs", signing_key=sp_key.private_key)
    message = decode_redirect(query_of(url).encode())
    verify_redirect_signature(message, [other_key.certificate, sp_key.certificate])
    with pytest.raises(SignatureError, match="does not verify"):
        verify_redirect_signature(message, [other_key.certificate])


def test_signature_is_checked_over_octets_as_received_not_re_encoded(sp_key) -> None:
    # An SP whose encoder uses lower-case percent escapes and leaves '/' unescaped: the
    # signature covers exactly those octets; re-encoding them our way would break it.
    deflated = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = base64.b64encode(deflated.compress(XML) + deflated.flush()).decode()
    saml = quote(body, safe="/").replace("%2B", "%2b").replace("%3D", "%3d")
    relay = "a%2fb"
    sig_alg = quote("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", safe="").lower()
    octets = f"SAMLRequest={saml}&RelayState={relay}&SigAlg={sig_alg}"
    sig = sp_key.private_key.sign(octets.encode(), padding.PKCS1v15(), hashes.SHA256())
    query = f"{octets}&Signature={quote(base64.b64encode(sig).decode(), safe='')}"
    message = decode_redirect(query)
    assert message.relay_state == "a/b"
    verify_redirect_signature(message, [sp_key.certificate])
    # parameter order in the URL does not matter; the signed string is rebuilt in spec order
    shuffled = "&".join(reversed(query.split("&")))
    verify_redirect_signature(decode_redirect(shuffled), [sp_key.certificate])


def test_tampered_relay_state_breaks_the_signature(sp_key) -> None:
    url = encode_redirect("https://idp/sso", XML, relay_state="rs", signing_key=sp_key.private_key)
    tampered = query_of(url).replace("RelayState=rs", "RelayState=evil")
    with pytest.raises(SignatureError):
        verify_redirect_signature(decode_redirect(tampered), [sp_key.certificate])


def test_ecdsa_sha256_query_signature() -> None:
    key = generate_signing_key("ES256")
    deflated = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = base64.b64encode(deflated.compress(XML) + deflated.flush()).decode()
    octets = f"SAMLRequest={quote(body, safe='')}&SigAlg={quote(SIG_ECDSA_SHA256, safe='')}"
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    assert isinstance(key.private_key, ec.EllipticCurvePrivateKey)
    r, s = decode_dss_signature(key.private_key.sign(octets.encode(), ec.ECDSA(hashes.SHA256())))
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    query = f"{octets}&Signature={quote(base64.b64encode(raw).decode(), safe='')}"
    verify_redirect_signature(decode_redirect(query), [key.certificate])


@pytest.mark.parametrize(
    "alg",
    [SIG_RSA_SHA1, "http://www.w3.org/2000/09/xmldsig#dsa-sha1", "none", ""],
)
def test_sha1_and_unknown_sigalgs_are_refused(sp_key, alg: str) -> None:
    url = encode_redirect("https://idp/sso", XML, signing_key=sp_key.private_key)
    query = re.sub(r"SigAlg=[^&]*", "SigAlg=" + quote(alg, safe=""), query_of(url))
    with pytest.raises(UnsupportedAlgorithm):
        decode_redirect(query)


@pytest.mark.parametrize(
    "query",
    [
        "RelayState=x",
        "SAMLRequest=PHIvPg%3D%3D&SAMLRequest=PHIvPg%3D%3D",
        "SAMLRequest=a&SAMLResponse=b",
        "SAMLRequest=%%%",
        "SAMLRequest=PHIvPg%3D%3D",  # base64 of plain XML, not DEFLATE
        "SAMLRequest=VALID&Signature=AAAA",
        "SAMLRequest=VALID&SigAlg=y",
        "SAMLRequest=VALID&RelayState=a&RelayState=b",
    ],
)
def test_malformed_redirect_queries(query: str) -> None:
    valid = query_of(encode_redirect("https://idp/sso", XML)).split("=", 1)[1]
    with pytest.raises(BindingError):
        decode_redirect(query.replace("VALID", valid))


def test_redirect_deflate_bomb_is_refused() -> None:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = c.compress(b" " * (5 * 1024 * 1024)) + c.flush()
    query = "SAMLRequest=" + quote(base64.b64encode(bomb).decode(), safe="")
    with pytest.raises(DeflateBomb):
        decode_redirect(query)


def test_relay_state_is_bounded() -> None:
    assert check_relay_state("x" * 1024) == "x" * 1024
    with pytest.raises(BindingError):
        check_relay_state("x" * 1025)
    with pytest.raises(BindingError, match="control"):
        check_relay_state("a\r\nSet-Cookie: x")


def test_post_decode() -> None:
    assert decode_post(base64.b64encode(XML).decode()) == XML
    with pytest.raises(BindingError):
        decode_post("<samlp:AuthnRequest/>")


def test_post_form_escapes_everything_and_carries_relay_state() -> None:
    page = post_form(
        "https://sp.example/acs?a=1&b=2",
        b"<r/>",
        relay_state='"><script>alert(1)</script>',
        nonce="n0nce",
    )
    assert 'action="https://sp.example/acs?a=1&amp;b=2"' in page
    assert "<script>alert(1)</script>" not in page
    assert 'value="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in page
    assert page.count("<script") == 1 and '<script nonce="n0nce">' in page
    assert "<noscript>" in page and 'type="submit"' in page
    assert f'name="SAMLResponse" value="{base64.b64encode(b"<r/>").decode()}"' in page


def test_post_form_without_nonce_has_no_script_and_refuses_odd_urls() -> None:
    page = post_form("https://sp.example/acs", b"<r/>")
    assert "<script" not in page and 'type="submit"' in page
    for url in ("javascript:alert(1)", "/relative", "data:text/html,x"):
        with pytest.raises(BindingError):
            post_form(url, b"<r/>")
