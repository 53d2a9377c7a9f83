"""The gateway as an SP of an upstream IdP: our SP metadata and AuthnRequests are accepted by
our own IdP-side parsers (the two halves agree), and the registry loads from SP configs."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from posture_gateway.saml.protocol.authn_request import (
    build_authn_request,
    parse_redirect_authn_request,
)
from posture_gateway.saml.protocol.bindings import encode_redirect
from posture_gateway.saml.protocol.errors import MetadataError
from posture_gateway.saml.protocol.metadata import sp_metadata_xml
from posture_gateway.saml.protocol.service_providers import (
    ServiceProviderConfig,
    ServiceProviderRegistry,
)

from .saml_factories import now

UPSTREAM_SSO = "https://upstream-idp.example/sso"
OUR_SP = "https://gateway.example.com/saml/upstream"
OUR_ACS = "https://gateway.example.com/saml/upstream/acs"


def test_our_signed_authn_request_is_accepted_by_an_idp_with_our_sp_metadata(
    tmp_path: Path, sp_key
) -> None:
    metadata = tmp_path / "gateway-sp.xml"
    metadata.write_bytes(
        sp_metadata_xml(
            entity_id=OUR_SP,
            acs_url=OUR_ACS,
            signing_certificates=[sp_key.certificate],
            authn_requests_signed=True,
        )
    )
    registry = ServiceProviderRegistry.from_configs(
        [ServiceProviderConfig(metadata_file=Path("gateway-sp.xml"))], base_dir=tmp_path
    )
    t = now()
    request_id, xml = build_authn_request(
        issuer=OUR_SP, destination=UPSTREAM_SSO, acs_url=OUR_ACS, now=t, force_authn=True
    )
    url = encode_redirect(UPSTREAM_SSO, xml, relay_state="r", signing_key=sp_key.private_key)
    parsed = parse_redirect_authn_request(
        urlsplit(url).query, registry=registry, sso_url=UPSTREAM_SSO, now=t
    )
    assert parsed.id == request_id and parsed.signed and parsed.force_authn
    assert parsed.acs.url == OUR_ACS and parsed.relay_state == "r"


def test_from_configs_needs_metadata_files(tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match=r"service_providers\[0\]: metadata_file"):
        ServiceProviderRegistry.from_configs([ServiceProviderConfig()])
