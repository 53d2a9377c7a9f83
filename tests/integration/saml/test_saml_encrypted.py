"""Encrypted assertions through the whole flow, decrypted by the independent SP: node-saml
(its ``xml-encryption``) opens our EncryptedAssertion with its own key (the certificate
from its metadata) and then checks the signatures, audience, Recipient and InResponseTo.
Both content algorithms the protocol layer offers: AES-256-GCM (default) and AES-128-CBC."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from mdm_core.posture.model import Platform
from mdm_core.simulator.reports import DeviceTraits
from tests.e2e.login_stack import USERNAME, login_stack
from tests.e2e.saml_login import http_saml_login, idp_certificate_pem
from tests.e2e.saml_sp import NodeSamlSp, SpKey
from tests.services import free_port

__all__: list[str] = []

pytestmark = [pytest.mark.peer]


@pytest.mark.parametrize("algorithm", ["aes256-gcm", "aes128-cbc"])
def test_node_saml_decrypts_and_accepts_our_encrypted_assertion(
    tmp_path: Path, algorithm: str
) -> None:
    with NodeSamlSp(entity_id="urn:test:enc-sp", encryption=SpKey.generate("enc")) as sp:
        metadata = tmp_path / "sp.xml"
        metadata.write_text(sp.metadata(), encoding="utf-8")
        saml = {
            "saml": {
                "service_providers": [
                    {
                        "metadata_file": str(metadata),
                        "nameid_attribute": "username",
                        "nameid_format": "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
                        "encrypt_assertion": True,
                        "encryption_algorithm": algorithm,
                    }
                ]
            }
        }
        with login_stack(
            tmp_path, f"http://127.0.0.1:{free_port()}/cb", Platform.LINUX, DeviceTraits(), saml
        ) as stack:
            sp.configure(
                idp_cert=idp_certificate_pem(stack.url),
                sso_url=stack.url + "/saml/sso",
                idp_entity_id=stack.url + "/saml/metadata",
            )
            login = sp.login()
            with httpx.Client(timeout=15) as http:
                answer = http_saml_login(http, stack.url, login["url"])
            xml = answer.response_xml
            assert "EncryptedAssertion" in xml and "<saml:Assertion" not in xml
            assert stack.device.device_id not in xml  # the posture attributes are encrypted
            result = sp.validate(answer.saml_response)
    assert result["ok"] is True, result
    assert result["profile"]["nameID"] == USERNAME
    assert result["profile"]["device_id"] == stack.device.device_id
    assert result["profile"]["inResponseTo"] == login["request_id"]
