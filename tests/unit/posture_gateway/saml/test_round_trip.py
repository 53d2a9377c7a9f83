"""The whole exchange through the public API, as the flow will run it: a signed
HTTP-Redirect AuthnRequest in, a signed Response posted back by the auto-submitting form, and
the SP's side (verify_response) accepting exactly that Response — and an error Response that
an SP reads as a refusal, with no assertion."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from posture_gateway.saml.protocol.authn_request import parse_redirect_authn_request
from posture_gateway.saml.protocol.bindings import decode_post, encode_redirect, post_form
from posture_gateway.saml.protocol.constants import NAMEID_EMAIL
from posture_gateway.saml.protocol.errors import StatusNotSuccess
from posture_gateway.saml.protocol.metadata import idp_metadata_xml, parse_idp_metadata
from posture_gateway.saml.protocol.response import (
    SamlStatus,
    build_error_response,
    build_response,
)
from posture_gateway.saml.protocol.response_verifier import verify_response
from posture_gateway.saml.protocol.service_providers import ServiceProviderConfig

from .saml_factories import (
    IDP_ENTITY,
    SP_ENTITY,
    SSO_URL,
    authn_request_xml,
    now,
    registry_for,
    sp_metadata_xml,
)

SUBJECT = (
    f'<saml:Subject><saml:NameID Format="{NAMEID_EMAIL}">alice@corp.com</saml:NameID>'
    "</saml:Subject>"
)


def _form_fields(page: str) -> dict[str, str]:
    return {
        m.group(1): html.unescape(m.group(2))
        for m in re.finditer(r'<input type="hidden" name="([^"]+)" value="([^"]*)"/>', page)
    }


@pytest.fixture
def registry(tmp_path: Path, sp_key):
    config = ServiceProviderConfig(require_signed_requests=True, okta_factor=True)
    return registry_for(tmp_path, (sp_metadata_xml(signing=sp_key), config))


def test_signed_redirect_request_to_verified_response(registry, sp_key, signer) -> None:
    t = now()
    url = encode_redirect(
        SSO_URL,
        authn_request_xml(subject_xml=SUBJECT),
        relay_state="https://app.example.org/after?x=1&y=<2>",
        signing_key=sp_key.private_key,
    )
    request = parse_redirect_authn_request(
        urlsplit(url).query.encode(), registry=registry, sso_url=SSO_URL, now=t
    )
    assert request.subject_name_id == "alice@corp.com"  # Okta factor mode: the user comes in
    issued = build_response(
        idp_entity_id=IDP_ENTITY,
        sp=request.service_provider,
        acs_url=request.acs.url,
        in_response_to=request.id,
        name_id=request.subject_name_id,
        name_id_format=request.subject_name_id_format,
        session_index="_session-1",
        authn_instant=t,
        signer=signer,
        now=t,
        attributes={"device_compliant": True, "posture_outcome": "allow", "posture_age_s": 3},
    )
    page = post_form(request.acs.url, issued.xml, relay_state=request.relay_state, nonce="n")
    fields = _form_fields(page)
    assert fields["RelayState"] == "https://app.example.org/after?x=1&y=<2>"
    # the SP side: it knows our certificate from our metadata, and its own request ID
    idp = parse_idp_metadata(
        idp_metadata_xml(
            entity_id=IDP_ENTITY, sso_url=SSO_URL, signing_certificates=signer.certificates()
        )
    )
    result = verify_response(
        decode_post(fields["SAMLResponse"]),
        idp_certs=idp.signing_certificates,
        expected_issuer=idp.entity_id,
        expected_audience=SP_ENTITY,
        expected_recipient=request.acs.url,
        expected_in_response_to=request.id,
        now=t + timedelta(seconds=2),
    )
    assert result.name_id == "alice@corp.com"
    assert result.attributes["posture_outcome"] == ("allow",)
    assert result.attributes["device_compliant"] == ("true",)
    assert result.session_index == "_session-1"


def test_refusal_reaches_the_sp_as_a_status_and_no_assertion(registry, sp_key, signer) -> None:
    t = now()
    url = encode_redirect(
        SSO_URL, authn_request_xml(is_passive=True), signing_key=sp_key.private_key
    )
    request = parse_redirect_authn_request(
        urlsplit(url).query, registry=registry, sso_url=SSO_URL, now=t
    )
    issued = build_error_response(
        idp_entity_id=IDP_ENTITY,
        destination=request.acs.url,
        in_response_to=request.id,
        status=SamlStatus.NO_PASSIVE,
        now=t,
        signer=signer,
    )
    fields = _form_fields(post_form(request.acs.url, issued.xml))
    with pytest.raises(StatusNotSuccess) as info:
        verify_response(
            decode_post(fields["SAMLResponse"]),
            idp_certs=signer.certificates(),
            expected_issuer=IDP_ENTITY,
            expected_audience=SP_ENTITY,
            expected_recipient=request.acs.url,
            expected_in_response_to=request.id,
            now=t,
        )
    assert info.value.sub_status is not None and info.value.sub_status.endswith("NoPassive")
