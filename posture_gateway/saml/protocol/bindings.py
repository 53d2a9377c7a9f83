"""SAML HTTP bindings (saml-bindings-2.0-os §3.4 HTTP-Redirect, §3.5 HTTP-POST).

HTTP-Redirect: ``SAMLRequest``/``SAMLResponse`` is base64 of raw DEFLATE (inflated with a hard
cap, :func:`.xml_safety.inflate`). Its signature (§3.4.4.1) is over the query octets **exactly
as received**: ``SAMLRequest=<v>&RelayState=<v>&SigAlg=<v>`` with each ``<v>`` the raw,
still URL-encoded value from the request line (re-encoding would break signatures made by
encoders that differ from ours). SigAlg must be RSA-SHA256/384/512 or ECDSA-SHA256; SHA-1 and
anything else is refused. Every parameter may occur once.

HTTP-POST: the form field is plain base64 of the XML. :func:`post_form` renders the
auto-submitting form for our Response: every value HTML-escaped, RelayState carried back,
one nonce'd script (for a Content-Security-Policy with ``script-src 'nonce-…'``) and a visible
button inside ``<noscript>``; without a nonce, no script at all, only the button.
"""

from __future__ import annotations

import base64
import html
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, unquote_plus, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .constants import (
    ACCEPTED_SIGNATURE_ALGORITHMS,
    SIG_ECDSA_SHA256,
    SIG_RSA_SHA256,
    SIG_RSA_SHA384,
    SIG_RSA_SHA512,
)
from .errors import (
    BindingError,
    SignatureError,
    SignatureMissing,
    UnsupportedAlgorithm,
    XmlTooLarge,
)
from .xml_safety import DEFAULT_LIMITS, XmlLimits, b64decode_strict, inflate

__all__ = [
    "MessageKind",
    "RedirectMessage",
    "decode_redirect",
    "verify_redirect_signature",
    "encode_redirect",
    "decode_post",
    "encode_post",
    "post_form",
    "check_relay_state",
]

MessageKind = Literal["SAMLRequest", "SAMLResponse"]
_KINDS: tuple[MessageKind, ...] = ("SAMLRequest", "SAMLResponse")
_SINGLE = frozenset({"SAMLRequest", "SAMLResponse", "RelayState", "SigAlg", "Signature"})
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    SIG_RSA_SHA256: hashes.SHA256,
    SIG_RSA_SHA384: hashes.SHA384,
    SIG_RSA_SHA512: hashes.SHA512,
    SIG_ECDSA_SHA256: hashes.SHA256,
}


@dataclass(frozen=True)
class RedirectMessage:
    """A decoded HTTP-Redirect message; ``signed_octets`` is what ``signature`` covers."""

    kind: MessageKind
    xml: bytes
    relay_state: str | None
    sig_alg: str | None
    signature: bytes | None
    signed_octets: bytes | None

    @property
    def is_signed(self) -> bool:
        """The query carried a Signature (not yet verified)."""
        return self.signature is not None


def check_relay_state(value: str | None, *, limits: XmlLimits = DEFAULT_LIMITS) -> str | None:
    """RelayState bounded in size and free of control characters (returned unchanged)."""
    if value is None:
        return None
    if len(value.encode("utf-8", "surrogatepass")) > limits.max_relay_state:
        raise BindingError(f"RelayState is longer than {limits.max_relay_state} bytes")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise BindingError("RelayState contains control characters")
    return value


def decode_redirect(
    query_string: str | bytes, *, limits: XmlLimits = DEFAULT_LIMITS
) -> RedirectMessage:
    """Decode an HTTP-Redirect query string (the raw one, as received, without ``?``).

    Raises :class:`BindingError` (missing/repeated parameters, bad base64 or DEFLATE, a
    Signature without SigAlg), :class:`DeflateBomb`, :class:`XmlTooLarge`, or
    :class:`UnsupportedAlgorithm` for a SigAlg we refuse. The signature is NOT verified
    here: call :func:`verify_redirect_signature` with the sender's certificates.
    """
    if isinstance(query_string, bytes):
        try:
            query_string = query_string.decode("ascii")
        except UnicodeDecodeError as exc:
            raise BindingError("query string is not ASCII (values must be URL-encoded)") from exc
    if len(query_string) > limits.max_encoded_bytes * 2:
        raise XmlTooLarge("query string is too long")
    raw: dict[str, str] = {}
    for part in query_string.split("&"):
        if not part:
            continue
        name_raw, sep, value_raw = part.partition("=")
        name = unquote_plus(name_raw)
        if name in _SINGLE:
            if name in raw:
                raise BindingError(f"{name} occurs more than once in the query string")
            raw[name] = value_raw
    kinds = [k for k in _KINDS if k in raw]
    if len(kinds) != 1:
        raise BindingError("the query string needs exactly one of SAMLRequest or SAMLResponse")
    kind = kinds[0]
    encoded = unquote_plus(raw[kind])
    compressed = b64decode_strict(encoded, what=kind, max_encoded=limits.max_encoded_bytes)
    xml = inflate(compressed, max_bytes=limits.max_bytes)
    relay_state = check_relay_state(
        unquote_plus(raw["RelayState"]) if "RelayState" in raw else None, limits=limits
    )
    sig_alg = unquote_plus(raw["SigAlg"]) if "SigAlg" in raw else None
    signature: bytes | None = None
    signed_octets: bytes | None = None
    if "Signature" in raw:
        if sig_alg is None:
            raise BindingError("Signature without SigAlg")
        if sig_alg not in ACCEPTED_SIGNATURE_ALGORITHMS:
            raise UnsupportedAlgorithm(
                f"SigAlg {sig_alg!r} is not accepted (RSA-SHA256/384/512 or ECDSA-SHA256; "
                "SHA-1 is refused)"
            )
        signature = b64decode_strict(
            unquote_plus(raw["Signature"]), what="Signature", max_encoded=4096
        )
        octets = f"{kind}={raw[kind]}"
        if "RelayState" in raw:
            octets += f"&RelayState={raw['RelayState']}"
        octets += f"&SigAlg={raw['SigAlg']}"
        signed_octets = octets.encode("ascii")
    elif sig_alg is not None:
        raise BindingError("SigAlg without Signature")
    return RedirectMessage(
        kind=kind,
        xml=xml,
        relay_state=relay_state,
        sig_alg=sig_alg,
        signature=signature,
        signed_octets=signed_octets,
    )


def _verify_one(cert: x509.Certificate, alg: str, signature: bytes, octets: bytes) -> bool:
    public = cert.public_key()
    digest = _HASHES[alg]()
    try:
        if alg == SIG_ECDSA_SHA256:
            if not isinstance(public, ec.EllipticCurvePublicKey):
                return False
            if len(signature) % 2:
                return False
            half = len(signature) // 2
            der = encode_dss_signature(
                int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
            )
            public.verify(der, octets, ec.ECDSA(digest))
            return True
        if not isinstance(public, rsa.RSAPublicKey):
            return False
        public.verify(signature, octets, padding.PKCS1v15(), digest)
        return True
    except (InvalidSignature, ValueError):
        return False


def verify_redirect_signature(
    message: RedirectMessage, certificates: Sequence[x509.Certificate]
) -> None:
    """Verify the query signature with one of the sender's metadata certificates.

    Raises :class:`SignatureMissing` for an unsigned message and :class:`SignatureError`
    when no certificate verifies it.
    """
    if message.signature is None or message.signed_octets is None or message.sig_alg is None:
        raise SignatureMissing(f"{message.kind} is not signed")
    if not certificates:
        raise SignatureError("no trusted certificate to verify the query signature with")
    for cert in certificates:
        if _verify_one(cert, message.sig_alg, message.signature, message.signed_octets):
            return
    raise SignatureError(
        f"{message.kind} query signature does not verify with any trusted certificate"
    )


def encode_redirect(
    url: str,
    xml: bytes,
    *,
    kind: MessageKind = "SAMLRequest",
    relay_state: str | None = None,
    signing_key: rsa.RSAPrivateKey | None = None,
) -> str:
    """The HTTP-Redirect URL for ``xml`` (DEFLATE + base64), signed RSA-SHA256 when a key is
    given (used to send AuthnRequests to an upstream IdP, and by tests)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = compressor.compress(xml) + compressor.flush()
    query = f"{kind}={quote(base64.b64encode(deflated).decode('ascii'), safe='')}"
    if relay_state is not None:
        query += f"&RelayState={quote(relay_state, safe='')}"
    if signing_key is not None:
        query += f"&SigAlg={quote(SIG_RSA_SHA256, safe='')}"
        signature = signing_key.sign(query.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        query += f"&Signature={quote(base64.b64encode(signature).decode('ascii'), safe='')}"
    separator = "&" if urlsplit(url).query else "?"
    return f"{url}{separator}{query}"


def decode_post(value: str | bytes, *, limits: XmlLimits = DEFAULT_LIMITS) -> bytes:
    """The XML of an HTTP-POST ``SAMLRequest``/``SAMLResponse`` form field (plain base64)."""
    xml = b64decode_strict(value, what="SAML message", max_encoded=limits.max_encoded_bytes)
    if len(xml) > limits.max_bytes:
        raise XmlTooLarge(f"SAML message is {len(xml)} bytes, over the {limits.max_bytes} limit")
    return xml


def encode_post(xml: bytes) -> str:
    """The base64 form-field value for ``xml``."""
    return base64.b64encode(xml).decode("ascii")


def post_form(
    action_url: str,
    xml: bytes,
    *,
    kind: MessageKind = "SAMLResponse",
    relay_state: str | None = None,
    nonce: str | None = None,
) -> str:
    """The auto-submitting HTML form that POSTs ``xml`` to ``action_url`` (an ACS URL).

    Every value is HTML-escaped; ``action_url`` must be http(s). With ``nonce`` one inline
    script (``nonce=``) submits the form, and a ``<noscript>`` button covers browsers without
    script; without ``nonce`` there is no script, only a Continue button.
    """
    scheme = urlsplit(action_url).scheme.lower()
    if scheme not in ("https", "http"):
        raise BindingError(f"refusing to POST a SAML message to a {scheme or 'relative'} URL")
    check_relay_state(relay_state)
    esc = html.escape
    fields = f'<input type="hidden" name="{kind}" value="{esc(encode_post(xml))}"/>'
    if relay_state is not None:
        fields += f'<input type="hidden" name="RelayState" value="{esc(relay_state)}"/>'
    button = '<button type="submit">Continue</button>'
    if nonce is not None:
        submit = (
            f"<noscript><p>JavaScript is off: press Continue to sign in.</p>{button}</noscript>"
            f'</form><script nonce="{esc(nonce)}">'
            'document.getElementById("saml-post").submit();</script>'
        )
    else:
        submit = f"<p>Press Continue to sign in.</p>{button}</form>"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="referrer" content="no-referrer"><title>Signing in</title></head><body>'
        f'<form id="saml-post" method="post" action="{esc(action_url)}">{fields}{submit}'
        "</body></html>"
    )
