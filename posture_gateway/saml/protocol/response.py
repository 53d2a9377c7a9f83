"""Building SAML Responses (SAML core §3.2.2, profiles §4.1.4.2 Web Browser SSO).

:func:`build_response` makes a Success ``samlp:Response`` with one ``saml:Assertion``:

- ``Issuer`` (our entity id), ``Status`` Success, ``InResponseTo`` (SP-initiated) and
  ``Destination`` = the ACS URL;
- ``Subject``: ``NameID`` in the SP's format; ``SubjectConfirmation`` Bearer whose data has
  ``Recipient`` = ACS URL, ``NotOnOrAfter`` and ``InResponseTo``;
- ``Conditions`` ``NotBefore`` (30 s back, for SP clocks slightly behind) / ``NotOnOrAfter``
  with ``AudienceRestriction`` = the SP's entity id;
- ``AuthnStatement`` (``AuthnInstant``, ``SessionIndex``, ``AuthnContextClassRef``);
- ``AttributeStatement``: the posture attributes (``device_id``, ``device_compliant``,
  ``posture_outcome``, ``posture_age_s``, ...) and any user attributes, named per SP config.

The Assertion and/or the Response are signed per SP config (default both; the Assertion first,
so the Response signature covers it), and the Assertion is encrypted when the SP asks
(:mod:`.encryption`, after signing it, as SAML core §6 orders).

:func:`build_error_response` makes a Response with no Assertion at all, for ``Requester`` /
``NoPassive``, ``Responder`` / ``AuthnFailed``, ``Responder`` / ``RequestDenied``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from lxml import etree

from .constants import (
    AC_PASSWORD_PROTECTED_TRANSPORT,
    ATTRNAME_FORMAT_BASIC,
    CM_BEARER,
    NS_SAML,
    NS_SAMLP,
    NS_XS,
    NS_XSI,
    STATUS_AUTHN_FAILED,
    STATUS_INVALID_NAMEID_POLICY,
    STATUS_NO_PASSIVE,
    STATUS_REQUEST_DENIED,
    STATUS_REQUESTER,
    STATUS_RESPONDER,
    STATUS_SUCCESS,
)
from .encryption import encrypt_assertion
from .errors import MessageError, UnknownAcsUrl
from .service_providers import ServiceProvider
from .signing import SamlSigner
from .values import new_id, saml_datetime

__all__ = [
    "AttributeValue",
    "SamlStatus",
    "IssuedResponse",
    "build_assertion",
    "build_response",
    "build_error_response",
    "saml_datetime",
    "NOT_BEFORE_BACKDATE",
]

AttributeValue = str | int | float | bool | Sequence[str]
NOT_BEFORE_BACKDATE = timedelta(seconds=30)

_SAML = f"{{{NS_SAML}}}"
_SAMLP = f"{{{NS_SAMLP}}}"
_XSI_TYPE = f"{{{NS_XSI}}}type"
_NSMAP_RESPONSE = {"samlp": NS_SAMLP, "saml": NS_SAML}
_NSMAP_ASSERTION = {"saml": NS_SAML, "xs": NS_XS, "xsi": NS_XSI}


class SamlStatus(Enum):
    """The (top-level, second-level) status codes we answer with."""

    SUCCESS = (STATUS_SUCCESS, None)
    NO_PASSIVE = (STATUS_REQUESTER, STATUS_NO_PASSIVE)
    INVALID_NAMEID_POLICY = (STATUS_REQUESTER, STATUS_INVALID_NAMEID_POLICY)
    AUTHN_FAILED = (STATUS_RESPONDER, STATUS_AUTHN_FAILED)
    REQUEST_DENIED = (STATUS_RESPONDER, STATUS_REQUEST_DENIED)

    @property
    def code(self) -> str:
        """The top-level StatusCode value."""
        return str(self.value[0])

    @property
    def sub_code(self) -> str | None:
        """The second-level StatusCode value, if any."""
        sub: str | None = self.value[1]
        return sub


@dataclass(frozen=True)
class IssuedResponse:
    """A built Response: the XML to POST, and the IDs to audit."""

    xml: bytes
    response_id: str
    assertion_id: str | None
    destination: str
    status: SamlStatus


def _text_value(value: str | int | float | bool) -> tuple[str, str]:
    if isinstance(value, bool):
        return ("xs:boolean", "true" if value else "false")
    if isinstance(value, int):
        return ("xs:integer", str(value))
    if isinstance(value, float):
        return ("xs:decimal", repr(round(value, 6)))
    return ("xs:string", str(value))


def _attribute_statement(
    parent: etree._Element, sp: ServiceProvider, attributes: Mapping[str, AttributeValue]
) -> None:
    if not attributes:
        return
    statement = etree.SubElement(parent, _SAML + "AttributeStatement")
    for key, value in attributes.items():
        attribute = etree.SubElement(statement, _SAML + "Attribute")
        attribute.set("Name", sp.saml_attribute_name(key))
        attribute.set("NameFormat", ATTRNAME_FORMAT_BASIC)
        values: Sequence[str | int | float | bool]
        if isinstance(value, str | int | float | bool):
            values = (value,)
        else:
            values = tuple(value)
        for item in values:
            xsi_type, text = _text_value(item)
            node = etree.SubElement(attribute, _SAML + "AttributeValue")
            node.set(_XSI_TYPE, xsi_type)
            node.text = text


def build_assertion(
    *,
    idp_entity_id: str,
    sp: ServiceProvider,
    acs_url: str,
    in_response_to: str | None,
    name_id: str,
    name_id_format: str | None = None,
    session_index: str,
    authn_instant: datetime,
    authn_context_class_ref: str = AC_PASSWORD_PROTECTED_TRANSPORT,
    attributes: Mapping[str, AttributeValue] | None = None,
    now: datetime,
) -> etree._Element:
    """The unsigned ``saml:Assertion`` element (see the module docstring for its content)."""
    if not name_id:
        raise MessageError("an assertion needs a NameID value")
    lifetime = timedelta(seconds=sp.config.assertion_lifetime_s)
    issued = saml_datetime(now)
    expires = saml_datetime(now + lifetime)
    assertion = etree.Element(_SAML + "Assertion", nsmap=_NSMAP_ASSERTION)
    assertion.set("ID", new_id())
    assertion.set("Version", "2.0")
    assertion.set("IssueInstant", issued)
    etree.SubElement(assertion, _SAML + "Issuer").text = idp_entity_id
    subject = etree.SubElement(assertion, _SAML + "Subject")
    nid = etree.SubElement(subject, _SAML + "NameID")
    nid.set("Format", name_id_format or sp.config.nameid_format)
    nid.set("SPNameQualifier", sp.entity_id)
    nid.text = name_id
    confirmation = etree.SubElement(subject, _SAML + "SubjectConfirmation", Method=CM_BEARER)
    data = etree.SubElement(confirmation, _SAML + "SubjectConfirmationData")
    data.set("NotOnOrAfter", expires)
    data.set("Recipient", acs_url)
    if in_response_to:
        data.set("InResponseTo", in_response_to)
    conditions = etree.SubElement(assertion, _SAML + "Conditions")
    conditions.set("NotBefore", saml_datetime(now - NOT_BEFORE_BACKDATE))
    conditions.set("NotOnOrAfter", expires)
    restriction = etree.SubElement(conditions, _SAML + "AudienceRestriction")
    etree.SubElement(restriction, _SAML + "Audience").text = sp.entity_id
    authn = etree.SubElement(assertion, _SAML + "AuthnStatement")
    authn.set("AuthnInstant", saml_datetime(authn_instant))
    authn.set("SessionIndex", session_index)
    context = etree.SubElement(authn, _SAML + "AuthnContext")
    etree.SubElement(context, _SAML + "AuthnContextClassRef").text = authn_context_class_ref
    _attribute_statement(assertion, sp, attributes or {})
    return assertion


def _response_shell(
    *,
    idp_entity_id: str,
    destination: str,
    in_response_to: str | None,
    status: SamlStatus,
    status_message: str | None,
    now: datetime,
) -> etree._Element:
    response = etree.Element(_SAMLP + "Response", nsmap=_NSMAP_RESPONSE)
    response.set("ID", new_id())
    response.set("Version", "2.0")
    response.set("IssueInstant", saml_datetime(now))
    response.set("Destination", destination)
    if in_response_to:
        response.set("InResponseTo", in_response_to)
    etree.SubElement(response, _SAML + "Issuer").text = idp_entity_id
    status_el = etree.SubElement(response, _SAMLP + "Status")
    code = etree.SubElement(status_el, _SAMLP + "StatusCode", Value=status.code)
    if status.sub_code:
        etree.SubElement(code, _SAMLP + "StatusCode", Value=status.sub_code)
    if status_message:
        etree.SubElement(status_el, _SAMLP + "StatusMessage").text = status_message
    return response


@contextmanager
def _xml_values() -> Iterator[None]:
    """lxml refuses strings XML cannot carry (control characters, lone surrogates) with a
    ValueError; say which as a MessageError instead."""
    try:
        yield
    except ValueError as exc:
        raise MessageError(f"a value cannot be represented in XML: {exc}") from exc


def _serialise(element: etree._Element) -> bytes:
    return bytes(etree.tostring(element, xml_declaration=True, encoding="UTF-8"))


def build_response(
    *,
    idp_entity_id: str,
    sp: ServiceProvider,
    acs_url: str,
    in_response_to: str | None,
    name_id: str,
    session_index: str,
    authn_instant: datetime,
    signer: SamlSigner,
    now: datetime,
    name_id_format: str | None = None,
    authn_context_class_ref: str = AC_PASSWORD_PROTECTED_TRANSPORT,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> IssuedResponse:
    """A signed (and, per SP config, encrypted) Success Response for ``sp``.

    ``acs_url`` must come from :meth:`ServiceProvider.resolve_acs` (a metadata endpoint);
    it is checked again here, so no Response is ever addressed to another URL.
    """
    if not any(a.url == acs_url for a in sp.metadata.acs):
        raise UnknownAcsUrl(f"{acs_url!r} is not an ACS URL of {sp.entity_id!r}")
    with _xml_values():
        return _signed_response(
            idp_entity_id=idp_entity_id,
            sp=sp,
            acs_url=acs_url,
            in_response_to=in_response_to,
            name_id=name_id,
            session_index=session_index,
            authn_instant=authn_instant,
            signer=signer,
            now=now,
            name_id_format=name_id_format,
            authn_context_class_ref=authn_context_class_ref,
            attributes=attributes,
        )


def _signed_response(
    *,
    idp_entity_id: str,
    sp: ServiceProvider,
    acs_url: str,
    in_response_to: str | None,
    name_id: str,
    session_index: str,
    authn_instant: datetime,
    signer: SamlSigner,
    now: datetime,
    name_id_format: str | None,
    authn_context_class_ref: str,
    attributes: Mapping[str, AttributeValue] | None,
) -> IssuedResponse:
    assertion = build_assertion(
        idp_entity_id=idp_entity_id,
        sp=sp,
        acs_url=acs_url,
        in_response_to=in_response_to,
        name_id=name_id,
        name_id_format=name_id_format,
        session_index=session_index,
        authn_instant=authn_instant,
        authn_context_class_ref=authn_context_class_ref,
        attributes=attributes,
        now=now,
    )
    assertion_id = assertion.get("ID")
    if sp.signs_assertion:
        assertion = signer.sign(assertion)
    if sp.config.encrypt_assertion:
        assertion = encrypt_assertion(
            assertion,
            certificate=sp.metadata.encryption_certificates[0],
            algorithm=sp.config.encryption_algorithm,
        )
    response = _response_shell(
        idp_entity_id=idp_entity_id,
        destination=acs_url,
        in_response_to=in_response_to,
        status=SamlStatus.SUCCESS,
        status_message=None,
        now=now,
    )
    response.append(assertion)
    if sp.config.sign_response:
        response = signer.sign(response)
    return IssuedResponse(
        xml=_serialise(response),
        response_id=str(response.get("ID")),
        assertion_id=assertion_id,
        destination=acs_url,
        status=SamlStatus.SUCCESS,
    )


def build_error_response(
    *,
    idp_entity_id: str,
    destination: str,
    in_response_to: str | None,
    status: SamlStatus,
    now: datetime,
    signer: SamlSigner | None,
    status_message: str | None = None,
) -> IssuedResponse:
    """A Response with a non-Success status and no Assertion (signed when a signer is given).

    ``destination`` must be a metadata ACS URL of the requesting SP (the caller resolved it);
    ``status_message`` is for the SP's logs: never put secrets or user detail in it.
    """
    if status is SamlStatus.SUCCESS:
        raise MessageError("an error Response needs a non-Success status")
    with _xml_values():
        response = _response_shell(
            idp_entity_id=idp_entity_id,
            destination=destination,
            in_response_to=in_response_to,
            status=status,
            status_message=status_message,
            now=now,
        )
        if signer is not None:
            response = signer.sign(response)
    return IssuedResponse(
        xml=_serialise(response),
        response_id=str(response.get("ID")),
        assertion_id=None,
        destination=destination,
        status=status,
    )
