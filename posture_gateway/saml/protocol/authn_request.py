"""Parsing and validating ``samlp:AuthnRequest`` (SAML core §3.4.1; bindings §3.4, §3.5).

The result is a frozen :class:`AuthnRequest` the login flow can trust. In order:

1. decode the binding (:mod:`.bindings`) and parse the XML with the hardened parser;
2. the root must be ``samlp:AuthnRequest``; its ``saml:Issuer`` must be a registered SP;
3. signature: HTTP-Redirect — the query signature over the raw octets, with the SP's
   metadata signing certificates (an XML signature inside a Redirect message is refused);
   HTTP-POST — the enveloped XML signature, and from then on only **the element the verified
   Reference points at** is read (signxml's ``signed_xml``, never the original tree). A
   signature that is present is always verified; an SP that requires signed requests (config
   or ``AuthnRequestsSigned="true"``) gets unsigned requests refused;
4. fields, from the trusted element: ``Version`` 2.0, ``ID``, ``IssueInstant`` no older than
   ``max_age`` nor further in the future than ``max_skew``, ``Destination`` equal to our SSO
   URL when present (required when signed, bindings §3.4.5.2), the ACS resolved EXACTLY
   against the SP's metadata (:meth:`ServiceProvider.resolve_acs`), ``ProtocolBinding``,
   ``ForceAuthn``, ``IsPassive``, ``NameIDPolicy``, ``RequestedAuthnContext`` and
   ``Subject/NameID`` (Okta's "factor only" mode names the user there).

Replay of request IDs is the flow's job (shared replay store): :attr:`AuthnRequest.id` and
:attr:`AuthnRequest.issue_instant` are what it needs (keep the ID until
``issue_instant + max_age``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from lxml import etree

from .bindings import check_relay_state, decode_post, decode_redirect, verify_redirect_signature
from .constants import (
    BINDING_HTTP_POST,
    BINDING_HTTP_REDIRECT,
    NAMEID_UNSPECIFIED,
    NS_DS,
    NS_SAML,
    NS_SAMLP,
)
from .errors import (
    DestinationMismatch,
    MessageError,
    SignatureError,
    SignatureMissing,
    StaleMessage,
    UnknownServiceProvider,
)
from .service_providers import AssertionConsumerService, ServiceProvider, ServiceProviderRegistry
from .signing import check_unique_ids, verify_enveloped
from .values import new_id, parse_index, parse_saml_datetime, saml_datetime
from .xml_safety import DEFAULT_LIMITS, XmlLimits, element_text, parse_xml

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_SKEW",
    "RequestedAuthnContext",
    "AuthnRequest",
    "parse_redirect_authn_request",
    "parse_post_authn_request",
    "build_authn_request",
]

DEFAULT_MAX_AGE = timedelta(minutes=5)  # how old an AuthnRequest's IssueInstant may be
DEFAULT_MAX_SKEW = timedelta(seconds=90)  # how far in the future (SP clock ahead of ours)

_SAML = f"{{{NS_SAML}}}"
_SAMLP = f"{{{NS_SAMLP}}}"
_DS = f"{{{NS_DS}}}"
_ENTITY_FORMAT = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity"
_COMPARISONS = frozenset({"exact", "minimum", "maximum", "better"})
_MAX_ID = 256


@dataclass(frozen=True)
class RequestedAuthnContext:
    """``samlp:RequestedAuthnContext``: the class refs and their comparison (default exact)."""

    comparison: str
    class_refs: tuple[str, ...]


@dataclass(frozen=True)
class AuthnRequest:
    """A validated AuthnRequest. ``acs`` is a metadata endpoint of ``service_provider``."""

    id: str
    issue_instant: datetime
    issuer: str
    service_provider: ServiceProvider
    acs: AssertionConsumerService
    binding: str  # the binding it arrived on: BINDING_HTTP_REDIRECT or BINDING_HTTP_POST
    signed: bool
    destination: str | None = None
    protocol_binding: str | None = None
    force_authn: bool = False
    is_passive: bool = False
    nameid_policy_format: str | None = None
    nameid_policy_allow_create: bool | None = None
    requested_authn_context: RequestedAuthnContext | None = None
    subject_name_id: str | None = None
    subject_name_id_format: str | None = None
    relay_state: str | None = None
    provider_name: str | None = None


def _bool(element: etree._Element, name: str) -> bool | None:
    value = element.get(name)
    if value is None:
        return None
    value = value.strip()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise MessageError(f"AuthnRequest {name}={value[:20]!r} is not an xs:boolean")


def _root(xml: bytes, limits: XmlLimits) -> etree._Element:
    root = parse_xml(xml, limits=limits)
    if root.tag != _SAMLP + "AuthnRequest":
        raise MessageError(f"expected samlp:AuthnRequest, got {str(root.tag)[:80]!r}")
    check_unique_ids(root)
    # Wrapping hardening: one AuthnRequest, and signatures only as the root's own child.
    if sum(1 for _ in root.iter(_SAMLP + "AuthnRequest")) != 1:
        raise MessageError("an AuthnRequest must not contain another AuthnRequest")
    for signature in root.iter(_DS + "Signature"):
        if signature.getparent() is not root:
            raise SignatureError("a ds:Signature is only accepted as the AuthnRequest's child")
    return root


def _issuer(root: etree._Element) -> str:
    issuers = root.findall(_SAML + "Issuer")
    if len(issuers) != 1:
        raise MessageError("AuthnRequest needs exactly one saml:Issuer")
    fmt = issuers[0].get("Format")
    if fmt is not None and fmt != _ENTITY_FORMAT:
        raise MessageError(f"AuthnRequest Issuer Format {fmt[:80]!r} is not the entity format")
    value = element_text(issuers[0], what="Issuer")
    if not value:
        raise MessageError("AuthnRequest Issuer is empty")
    return value


def _provider(root: etree._Element, registry: ServiceProviderRegistry) -> ServiceProvider:
    issuer = _issuer(root)
    sp = registry.get(issuer)
    if sp is None:
        raise UnknownServiceProvider(f"AuthnRequest from unregistered issuer {issuer[:200]!r}")
    return sp


def _subject(root: etree._Element) -> tuple[str | None, str | None]:
    subject = root.find(_SAML + "Subject")
    if subject is None:
        return None, None
    ids = subject.findall(_SAML + "NameID")
    if len(ids) != 1 or len(subject) != 1:
        raise MessageError("AuthnRequest Subject must hold exactly one saml:NameID")
    value = element_text(ids[0], what="Subject NameID")
    if not value:
        raise MessageError("AuthnRequest Subject NameID is empty")
    return value, ids[0].get("Format")


def _requested_context(root: etree._Element) -> RequestedAuthnContext | None:
    node = root.find(_SAMLP + "RequestedAuthnContext")
    if node is None:
        return None
    comparison = node.get("Comparison", "exact")
    if comparison not in _COMPARISONS:
        raise MessageError(f"RequestedAuthnContext Comparison {comparison[:20]!r} is invalid")
    refs = tuple(
        element_text(r, what="AuthnContextClassRef")
        for r in node.findall(_SAML + "AuthnContextClassRef")
    )
    if not refs:
        raise MessageError("RequestedAuthnContext has no AuthnContextClassRef")
    return RequestedAuthnContext(comparison=comparison, class_refs=refs)


def _validate(
    trusted: etree._Element,
    *,
    sp: ServiceProvider,
    binding: str,
    signed: bool,
    relay_state: str | None,
    sso_url: str,
    now: datetime,
    max_age: timedelta,
    max_skew: timedelta,
) -> AuthnRequest:
    if _issuer(trusted) != sp.entity_id:
        raise SignatureError("the signed AuthnRequest names a different Issuer")
    version = trusted.get("Version")
    if version != "2.0":
        raise MessageError(f"AuthnRequest Version {str(version)[:10]!r} is not 2.0")
    request_id = trusted.get("ID") or ""
    if not request_id or len(request_id) > _MAX_ID:
        raise MessageError("AuthnRequest ID is missing or longer than 256 characters")
    issue_instant = parse_saml_datetime(trusted.get("IssueInstant"), what="IssueInstant")
    if issue_instant > now + max_skew:
        raise StaleMessage("AuthnRequest IssueInstant is in the future")
    if issue_instant < now - max_age:
        raise StaleMessage("AuthnRequest IssueInstant is too old")
    destination = trusted.get("Destination")
    if destination is not None and destination != sso_url:
        raise DestinationMismatch(
            f"AuthnRequest Destination {destination[:200]!r} is not our SSO URL"
        )
    if signed and destination is None:
        raise DestinationMismatch("a signed AuthnRequest must carry a Destination")
    raw_index = trusted.get("AssertionConsumerServiceIndex")
    index = (
        parse_index(raw_index, what="AssertionConsumerServiceIndex")
        if raw_index is not None
        else None
    )
    protocol_binding = trusted.get("ProtocolBinding")
    acs = sp.resolve_acs(
        url=trusted.get("AssertionConsumerServiceURL"), index=index, binding=protocol_binding
    )
    policy = trusted.find(_SAMLP + "NameIDPolicy")
    subject_name_id, subject_format = _subject(trusted)
    force_authn = bool(_bool(trusted, "ForceAuthn"))
    is_passive = bool(_bool(trusted, "IsPassive"))
    return AuthnRequest(
        id=request_id,
        issue_instant=issue_instant,
        issuer=sp.entity_id,
        service_provider=sp,
        acs=acs,
        binding=binding,
        signed=signed,
        destination=destination,
        protocol_binding=protocol_binding,
        force_authn=force_authn,
        is_passive=is_passive,
        nameid_policy_format=policy.get("Format") if policy is not None else None,
        nameid_policy_allow_create=_bool(policy, "AllowCreate") if policy is not None else None,
        requested_authn_context=_requested_context(trusted),
        subject_name_id=subject_name_id,
        subject_name_id_format=subject_format,
        relay_state=relay_state,
        provider_name=trusted.get("ProviderName"),
    )


def parse_redirect_authn_request(
    query_string: str | bytes,
    *,
    registry: ServiceProviderRegistry,
    sso_url: str,
    now: datetime,
    max_age: timedelta = DEFAULT_MAX_AGE,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
    limits: XmlLimits = DEFAULT_LIMITS,
) -> AuthnRequest:
    """An AuthnRequest from the HTTP-Redirect binding: ``query_string`` is the RAW query
    string as received (e.g. Flask's ``request.query_string``), so its signature can be
    checked over the exact octets. Raises a :class:`SamlError` subclass on any problem."""
    message = decode_redirect(query_string, limits=limits)
    if message.kind != "SAMLRequest":
        raise MessageError("expected a SAMLRequest")
    root = _root(message.xml, limits)
    sp = _provider(root, registry)
    if root.find(_DS + "Signature") is not None:
        raise SignatureError(
            "an HTTP-Redirect AuthnRequest must not carry an XML signature (bindings §3.4.4.1)"
        )
    if message.is_signed:
        verify_redirect_signature(message, sp.metadata.signing_certificates)
    elif sp.requires_signed_requests:
        raise SignatureMissing(f"SP {sp.entity_id!r} must sign its AuthnRequests")
    return _validate(
        root,
        sp=sp,
        binding=BINDING_HTTP_REDIRECT,
        signed=message.is_signed,
        relay_state=message.relay_state,
        sso_url=sso_url,
        now=now,
        max_age=max_age,
        max_skew=max_skew,
    )


def parse_post_authn_request(
    saml_request: str | bytes,
    *,
    relay_state: str | None,
    registry: ServiceProviderRegistry,
    sso_url: str,
    now: datetime,
    max_age: timedelta = DEFAULT_MAX_AGE,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
    limits: XmlLimits = DEFAULT_LIMITS,
) -> AuthnRequest:
    """An AuthnRequest from the HTTP-POST binding (the ``SAMLRequest`` form field, base64).

    When signed, everything is read from the element the verified signature covers.
    Raises a :class:`SamlError` subclass on any problem.
    """
    check_relay_state(relay_state, limits=limits)
    root = _root(decode_post(saml_request, limits=limits), limits)
    sp = _provider(root, registry)
    signed = root.find(_DS + "Signature") is not None
    if signed:
        trusted = verify_enveloped(
            root, certificates=sp.metadata.signing_certificates, what="AuthnRequest"
        )
    elif sp.requires_signed_requests:
        raise SignatureMissing(f"SP {sp.entity_id!r} must sign its AuthnRequests")
    else:
        trusted = root
    return _validate(
        trusted,
        sp=sp,
        binding=BINDING_HTTP_POST,
        signed=signed,
        relay_state=relay_state,
        sso_url=sso_url,
        now=now,
        max_age=max_age,
        max_skew=max_skew,
    )


def build_authn_request(
    *,
    issuer: str,
    destination: str,
    acs_url: str,
    now: datetime,
    request_id: str | None = None,
    force_authn: bool = False,
    is_passive: bool = False,
    nameid_format: str = NAMEID_UNSPECIFIED,
) -> tuple[str, bytes]:
    """An AuthnRequest from us (as an SP) to an upstream IdP: ``(request ID, XML bytes)``.

    Asks for an HTTP-POST Response to ``acs_url``. Send it with
    :func:`.bindings.encode_redirect` (signed with our key when the IdP wants signed
    requests) and keep the ID for :func:`.response_verifier.verify_response`'s
    ``expected_in_response_to`` (and for replay refusal).
    """
    rid = request_id or new_id()
    root = etree.Element(_SAMLP + "AuthnRequest", nsmap={"samlp": NS_SAMLP, "saml": NS_SAML})
    root.set("ID", rid)
    root.set("Version", "2.0")
    root.set("IssueInstant", saml_datetime(now))
    root.set("Destination", destination)
    root.set("AssertionConsumerServiceURL", acs_url)
    root.set("ProtocolBinding", BINDING_HTTP_POST)
    if force_authn:
        root.set("ForceAuthn", "true")
    if is_passive:
        root.set("IsPassive", "true")
    etree.SubElement(root, _SAML + "Issuer").text = issuer
    policy = etree.SubElement(root, _SAMLP + "NameIDPolicy")
    policy.set("Format", nameid_format)
    policy.set("AllowCreate", "true")
    return rid, bytes(etree.tostring(root, encoding="UTF-8"))
