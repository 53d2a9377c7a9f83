"""Fixtures of the SAML protocol tests: keys are generated once per session (RSA-2048 costs
~50-100 ms each), everything else is cheap and per test."""

from __future__ import annotations

import pytest

from posture_gateway.saml.protocol.signing import SamlSigner
from posture_gateway.signing.key_ring import KeyRing, SigningKey, generate_signing_key

from .saml_factories import Xmlsec1


@pytest.fixture(scope="session")
def idp_key() -> SigningKey:
    return generate_signing_key("RS256", issuer_name="test-idp")


@pytest.fixture(scope="session")
def sp_key() -> SigningKey:
    return generate_signing_key("RS256", issuer_name="test-sp")


@pytest.fixture(scope="session")
def other_key() -> SigningKey:
    """A key no metadata trusts (an attacker's)."""
    return generate_signing_key("RS256", issuer_name="attacker")


@pytest.fixture(scope="session")
def signer(idp_key: SigningKey) -> SamlSigner:
    return SamlSigner(KeyRing([idp_key]))


@pytest.fixture
def xmlsec1(tmp_path) -> Xmlsec1:
    return Xmlsec1(tmp_path)
