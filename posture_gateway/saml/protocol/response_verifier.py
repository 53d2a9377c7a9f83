"""Verifying a ``samlp:Response`` from an upstream SAML IdP (profiles §4.1.4.3, core §3.2.2).

Used when the user is identified by an upstream SAML IdP (the gateway acting as an SP).
:func:`verify_response` returns a :class:`VerifiedAssertion` only when ALL of these hold:

- the document passes the hardened parser, has no duplicate IDs, and holds exactly ONE
  assertion (``Assertion`` or ``EncryptedAssertion``) anywhere — a second one, e.g. the
  signed original moved into ``Extensions`` or a ``ds:Object``, is a wrapping attack;
- the Response and/or the Assertion carry a signature by one of ``idp_certs`` (from the
  IdP's metadata), and everything is read from the element **as signed** (signxml's
  ``signed_xml``); an assertion covered by neither signature is refused;
- Status is Success (else :class:`StatusNotSuccess` with the codes, for the flow to show);
- Response and Assertion Issuer equal ``expected_issuer``; Destination (when present, and
  always when the Response is signed) equals ``expected_recipient``;
- a Bearer ``SubjectConfirmationData`` with ``Recipient`` = ``expected_recipient``,
  ``NotOnOrAfter`` in the future and ``InResponseTo`` = ``expected_in_response_to``
  (absent for an unsolicited Response, whose ``expected_in_response_to`` is None);
- ``Conditions`` ``NotBefore``/``NotOnOrAfter`` hold within ``max_skew``, and every
  ``AudienceRestriction`` names ``expected_audience``;
- exactly one ``AuthnStatement``; a ``SessionNotOnOrAfter`` in the past is refused.

Replay of assertion IDs is the caller's (keep :attr:`VerifiedAssertion.assertion_id` until
:attr:`VerifiedAssertion.not_on_or_after`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

from .constants import CM_BEARER, NS_DS, NS_SAML, NS_SAMLP, STATUS_SUCCESS
from .encryption import decrypt_assertion
from .errors import (
    DestinationMismatch,
    MessageError,
    SignatureMissing,
    StaleMessage,
    StatusNotSuccess,
)
from .signing import check_unique_ids, verify_enveloped
from .values import parse_saml_datetime
from .xml_safety import DEFAULT_LIMITS, XmlLimits, element_text, parse_xml

__all__ = ["DEFAULT_RESPONSE_SKEW", "VerifiedAssertion", "verify_response"]

DEFAULT_RESPONSE_SKEW = timedelta(seconds=90)

_SAML = f"{{{NS_SAML}}}"
_SAMLP = f"{{{NS_SAMLP}}}"
_DS = f"{{{NS_DS}}}"


@dataclass(frozen=True)
class VerifiedAssertion:
    """The subject an upstream IdP vouched for, read from signed XML only."""

    issuer: str
    name_id: str
    name_id_format: str | None
    session_index: str | None
    authn_instant: datetime
    authn_context_class_ref: str | None
    assertion_id: str
    response_id: str
    in_response_to: str | None
    not_on_or_after: datetime
    attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _one(parent: etree._Element, tag: str, what: str) -> etree._Element:
    found = parent.findall(tag)
    if len(found) != 1:
        raise MessageError(f"expected exactly one {what}, found {len(found)}")
    return found[0]


def _issuer(element: etree._Element, expected: str, what: str, *, required: bool) -> None:
    nodes = element.findall(_SAML + "Issuer")
    if not nodes:
        if required:
            raise MessageError(f"{what} has no Issuer")
        return
    if len(nodes) > 1:
        raise MessageError(f"{what} has more than one Issuer")
    value = element_text(nodes[0], what=f"{what} Issuer")
    if value != expected:
        raise MessageError(f"{what} Issuer {value[:200]!r} is not the expected IdP")


def _status(response: etree._Element) -> None:
    status = _one(response, _SAMLP + "Status", "samlp:Status")
    code = _one(status, _SAMLP + "StatusCode", "samlp:StatusCode")
    value = code.get("Value") or ""
    if value != STATUS_SUCCESS:
        sub = code.find(_SAMLP + "StatusCode")
        sub_value = sub.get("Value") if sub is not None else None
        raise StatusNotSuccess(
            f"upstream IdP answered {value.rsplit(':', 1)[-1]}"
            + (f"/{sub_value.rsplit(':', 1)[-1]}" if sub_value else ""),
            status=value,
            sub_status=sub_value,
        )


def _assertion_nodes(root: etree._Element) -> list[etree._Element]:
    return [
        node
        for node in root.iter(_SAML + "Assertion", _SAML + "EncryptedAssertion")
        if isinstance(node.tag, str)
    ]


def _check_window(
    not_before: str | None,
    not_on_or_after: str | None,
    *,
    what: str,
    now: datetime,
    skew: timedelta,
    require_end: bool,
) -> datetime | None:
    end: datetime | None = None
    if not_before is not None:
        start = parse_saml_datetime(not_before, what=f"{what} NotBefore")
        if start > now + skew:
            raise StaleMessage(f"{what} is not valid yet (NotBefore)")
    if not_on_or_after is not None:
        end = parse_saml_datetime(not_on_or_after, what=f"{what} NotOnOrAfter")
        if end <= now - skew:
            raise StaleMessage(f"{what} has expired (NotOnOrAfter)")
    elif require_end:
        raise MessageError(f"{what} has no NotOnOrAfter")
    return end


def _subject(
    assertion: etree._Element,
    *,
    recipient: str,
    in_response_to: str | None,
    now: datetime,
    skew: timedelta,
) -> tuple[str, str | None, datetime]:
    subject = _one(assertion, _SAML + "Subject", "saml:Subject")
    name_id_node = _one(subject, _SAML + "NameID", "saml:NameID in the Subject")
    name_id = element_text(name_id_node, what="NameID")
    if not name_id:
        raise MessageError("NameID is empty")
    problems: list[str] = []
    stale: StaleMessage | None = None
    for confirmation in subject.findall(_SAML + "SubjectConfirmation"):
        if confirmation.get("Method") != CM_BEARER:
            continue
        data = confirmation.find(_SAML + "SubjectConfirmationData")
        if data is None:
            problems.append("no SubjectConfirmationData")
            continue
        if data.get("Recipient") != recipient:
            problems.append("Recipient is not our ACS URL")
            continue
        if data.get("InResponseTo") != in_response_to:
            problems.append("InResponseTo does not match our request")
            continue
        try:
            end = _check_window(
                data.get("NotBefore"),
                data.get("NotOnOrAfter"),
                what="SubjectConfirmationData",
                now=now,
                skew=skew,
                require_end=True,
            )
        except StaleMessage as exc:
            stale = exc
            continue
        except MessageError as exc:
            problems.append(str(exc))
            continue
        assert end is not None
        return name_id, name_id_node.get("Format"), end
    if stale is not None:  # addressed to us, but outside its validity window
        raise stale
    detail = "; ".join(problems) if problems else "no Bearer SubjectConfirmation"
    raise DestinationMismatch(f"no acceptable Bearer SubjectConfirmation ({detail})")


def _conditions(
    assertion: etree._Element, *, audience: str, now: datetime, skew: timedelta
) -> datetime | None:
    conditions = _one(assertion, _SAML + "Conditions", "saml:Conditions")
    end = _check_window(
        conditions.get("NotBefore"),
        conditions.get("NotOnOrAfter"),
        what="Assertion Conditions",
        now=now,
        skew=skew,
        require_end=False,
    )
    restrictions = conditions.findall(_SAML + "AudienceRestriction")
    if not restrictions:
        raise DestinationMismatch("Assertion has no AudienceRestriction")
    for restriction in restrictions:
        audiences = [
            element_text(a, what="Audience") for a in restriction.findall(_SAML + "Audience")
        ]
        if audience not in audiences:
            raise DestinationMismatch("Assertion AudienceRestriction does not name us")
    return end


def _attributes(assertion: etree._Element) -> dict[str, tuple[str, ...]]:
    attributes: dict[str, tuple[str, ...]] = {}
    for statement in assertion.findall(_SAML + "AttributeStatement"):
        for attribute in statement.findall(_SAML + "Attribute"):
            name = attribute.get("Name")
            if not name:
                raise MessageError("an Attribute has no Name")
            values = tuple(
                element_text(v, what=f"Attribute {name[:40]}")
                for v in attribute.findall(_SAML + "AttributeValue")
            )
            attributes[name] = attributes.get(name, ()) + values
    return attributes


def verify_response(
    xml: bytes,
    *,
    idp_certs: Sequence[x509.Certificate],
    expected_issuer: str,
    expected_audience: str,
    expected_recipient: str,
    expected_in_response_to: str | None,
    now: datetime,
    max_skew: timedelta = DEFAULT_RESPONSE_SKEW,
    decryption_key: rsa.RSAPrivateKey | None = None,
    limits: XmlLimits = DEFAULT_LIMITS,
) -> VerifiedAssertion:
    """Verify an upstream IdP's Response (decoded XML bytes) and return its subject.

    ``expected_in_response_to`` is the ID of our AuthnRequest (None only for an unsolicited,
    IdP-initiated Response). ``decryption_key`` decrypts an EncryptedAssertion. Raises a
    :class:`SamlError` subclass on every failure (see the module docstring).
    """
    root = parse_xml(xml, limits=limits)
    if root.tag != _SAMLP + "Response":
        raise MessageError(f"expected samlp:Response, got {str(root.tag)[:80]!r}")
    check_unique_ids(root)
    if len(_assertion_nodes(root)) > 1:  # anywhere: a wrapped signed copy counts too
        raise MessageError("the Response must contain exactly one assertion, found several")
    response_signed = root.find(_DS + "Signature") is not None
    response = (
        verify_enveloped(root, certificates=idp_certs, what="Response") if response_signed else root
    )
    if response.get("Version") != "2.0":
        raise MessageError("Response Version is not 2.0")
    _issuer(response, expected_issuer, "Response", required=False)
    destination = response.get("Destination")
    if destination is not None and destination != expected_recipient:
        raise DestinationMismatch("Response Destination is not our ACS URL")
    if response_signed and destination is None:
        raise DestinationMismatch("a signed Response must carry a Destination")
    if response.get("InResponseTo") != expected_in_response_to:
        raise MessageError("Response InResponseTo does not match our request")
    _status(response)
    nodes = _assertion_nodes(response)
    if len(nodes) != 1:
        raise MessageError("the Response must contain exactly one assertion")
    if nodes[0].getparent() is not response:
        raise MessageError("the assertion must be a direct child of the Response")
    assertion = nodes[0]
    if assertion.tag == _SAML + "EncryptedAssertion":
        if decryption_key is None:
            raise MessageError("the Response holds an EncryptedAssertion and we have no key")
        assertion = decrypt_assertion(assertion, private_key=decryption_key, limits=limits)
        check_unique_ids(assertion)
    # From here on ``assertion`` is trusted: covered by the verified Response signature (it
    # was read from that signed tree) or replaced by its own verified signed element.
    if assertion.find(_DS + "Signature") is not None:
        assertion = verify_enveloped(assertion, certificates=idp_certs, what="Assertion")
    elif not response_signed:
        raise SignatureMissing("neither the Response nor the Assertion is signed")
    if assertion.get("Version") != "2.0":
        raise MessageError("Assertion Version is not 2.0")
    assertion_id = assertion.get("ID")
    if not assertion_id:
        raise MessageError("Assertion has no ID")
    _issuer(assertion, expected_issuer, "Assertion", required=True)
    issued = parse_saml_datetime(assertion.get("IssueInstant"), what="Assertion IssueInstant")
    if issued > now + max_skew:
        raise StaleMessage("Assertion IssueInstant is in the future")
    name_id, name_id_format, confirmation_end = _subject(
        assertion,
        recipient=expected_recipient,
        in_response_to=expected_in_response_to,
        now=now,
        skew=max_skew,
    )
    conditions_end = _conditions(assertion, audience=expected_audience, now=now, skew=max_skew)
    statement = _one(assertion, _SAML + "AuthnStatement", "saml:AuthnStatement")
    authn_instant = parse_saml_datetime(statement.get("AuthnInstant"), what="AuthnInstant")
    session_end = statement.get("SessionNotOnOrAfter")
    if session_end is not None:
        if parse_saml_datetime(session_end, what="SessionNotOnOrAfter") <= now - max_skew:
            raise StaleMessage("the IdP session has ended (SessionNotOnOrAfter)")
    class_ref_node = statement.find(f"{_SAML}AuthnContext/{_SAML}AuthnContextClassRef")
    class_ref = (
        element_text(class_ref_node, what="AuthnContextClassRef")
        if class_ref_node is not None
        else None
    )
    ends = [confirmation_end] + ([conditions_end] if conditions_end else [])
    return VerifiedAssertion(
        issuer=expected_issuer,
        name_id=name_id,
        name_id_format=name_id_format,
        session_index=statement.get("SessionIndex"),
        authn_instant=authn_instant,
        authn_context_class_ref=class_ref,
        assertion_id=assertion_id,
        response_id=str(response.get("ID") or ""),
        in_response_to=expected_in_response_to,
        not_on_or_after=min(ends),
        attributes=_attributes(assertion),
    )
