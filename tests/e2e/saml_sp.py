"""The independent SAML service provider (npm @node-saml/node-saml,
tests/peers/node/saml_sp.mjs) as a subprocess serving its own ACS; the Python side reads its
JSON lines.

::

    with NodeSamlSp(entity_id="urn:test:sp", signing=SpKey.generate()) as sp:
        sp.acs_url, sp.metadata()              # register the SP with the gateway, start it
        sp.configure(idp_cert=..., sso_url=..., idp_entity_id=...)
        login = sp.login(relay_state="r1")     # {"url", "request_id", "request_xml"}
        ...                                    # a browser follows login["url"] ... ACS
        result = sp.acs_result(timeout=20)     # node-saml's verdict on the POSTed Response
        sp.validate(saml_response, relay)      # the same check on a form an HTTP client got
        sp.stop()                              # -> how many times the ACS was hit
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

__all__ = ["NODE_DIR", "NodeSamlSp", "SpKey", "sp_metadata_xml"]

NODE_DIR = Path(__file__).resolve().parents[1] / "peers" / "node"


@dataclass(frozen=True)
class SpKey:
    """An SP's RSA-2048 request-signing key and its self-signed certificate (PEM)."""

    key_pem: str
    cert_pem: str

    @classmethod
    def generate(cls, name: str = "node-saml sp") -> SpKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=2))
            .sign(key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return cls(key_pem, cert.public_bytes(serialization.Encoding.PEM).decode())

    @property
    def cert_base64(self) -> str:
        body = self.cert_pem.strip().splitlines()[1:-1]
        return "".join(body)


def _key_descriptor(use: str, key: SpKey | None) -> str:
    if key is None:
        return ""
    return (
        f'<md:KeyDescriptor use="{use}"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>'
        f"{key.cert_base64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"
        "</md:KeyDescriptor>"
    )


def sp_metadata_xml(
    entity_id: str,
    acs_url: str,
    *,
    signing: SpKey | None,
    authn_requests_signed: bool = False,
    encryption: SpKey | None = None,
) -> str:
    """SP metadata naming ``acs_url`` (HTTP-POST) and, if any, the request-signing and the
    encryption certificates."""
    key_descriptor = _key_descriptor("signing", signing) + _key_descriptor("encryption", encryption)
    signed = "true" if authn_requests_signed else "false"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        f'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity_id}">'
        f'<md:SPSSODescriptor AuthnRequestsSigned="{signed}" WantAssertionsSigned="true" '
        'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f"{key_descriptor}"
        "<md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified</md:NameIDFormat>"
        '<md:AssertionConsumerService index="0" isDefault="true" '
        'Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" '
        f'Location="{acs_url}"/>'
        "</md:SPSSODescriptor></md:EntityDescriptor>"
    )


class NodeSamlSp:
    """One node-saml SP process. ACS results and command answers arrive on separate queues."""

    def __init__(
        self, *, entity_id: str, signing: SpKey | None = None, encryption: SpKey | None = None
    ) -> None:
        env = {**os.environ, "SP_ENTITY_ID": entity_id}
        if signing is not None:
            env["SP_KEY_PEM"], env["SP_CERT_PEM"] = signing.key_pem, signing.cert_pem
        if encryption is not None:
            env["DECRYPTION_PVK"] = encryption.key_pem
        self.entity_id = entity_id
        self.signing = signing
        self.encryption = encryption
        self._process = subprocess.Popen(
            ["node", "saml_sp.mjs"],
            cwd=NODE_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._answers: queue.Queue[str] = queue.Queue()
        self._acs: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        first = self._next(self._answers, 20)
        assert "acs_url" in first, first
        self.acs_url: str = first["acs_url"]

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            target = self._acs if '"via":"acs"' in line else self._answers
            target.put(line)
        self._answers.put("")  # EOF
        self._acs.put("")

    def _next(self, source: queue.Queue[str], timeout: float) -> dict[str, Any]:
        try:
            line = source.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the node-saml SP said nothing for {timeout} s") from None
        if not line:
            stderr = self._process.stderr.read() if self._process.stderr else ""
            raise AssertionError(f"the node-saml SP exited: {stderr}")
        data: dict[str, Any] = json.loads(line)
        return data

    def _ask(self, command: dict[str, Any], timeout: float = 20) -> dict[str, Any]:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(command) + "\n")
        self._process.stdin.flush()
        return self._next(self._answers, timeout)

    def metadata(self, *, authn_requests_signed: bool | None = None) -> str:
        signed = (
            self.signing is not None if authn_requests_signed is None else authn_requests_signed
        )
        return sp_metadata_xml(
            self.entity_id,
            self.acs_url,
            signing=self.signing,
            authn_requests_signed=signed,
            encryption=self.encryption,
        )

    def configure(
        self, *, idp_cert: str, sso_url: str, idp_entity_id: str, in_response_to: str = "always"
    ) -> None:
        answer = self._ask(
            {
                "cmd": "configure",
                "idp_cert": idp_cert,
                "entry_point": sso_url,
                "idp_issuer": idp_entity_id,
                "in_response_to": in_response_to,
            }
        )
        assert answer.get("configured") is True, answer

    def login(
        self, *, relay_state: str = "", force_authn: bool = False, passive: bool = False
    ) -> dict[str, Any]:
        """A new AuthnRequest (HTTP-Redirect, signed when the SP has a key): its URL and ID."""
        answer = self._ask(
            {
                "cmd": "login",
                "relay_state": relay_state,
                "force_authn": force_authn,
                "passive": passive,
            }
        )
        assert "url" in answer, answer
        return answer

    def validate(self, saml_response: str, relay_state: str | None = None) -> dict[str, Any]:
        """node-saml's verdict on a Response the test fetched itself (not via the ACS)."""
        return self._ask(
            {"cmd": "validate", "saml_response": saml_response, "relay_state": relay_state}
        )

    def acs_result(self, timeout: float = 20) -> dict[str, Any]:
        """The verdict on the next Response POSTed to the ACS (waits for the browser)."""
        return self._next(self._acs, timeout)

    def stop(self) -> int:
        """End the SP; return how many times its ACS was hit."""
        answer = self._ask({"cmd": "stop"}, timeout=10)
        assert "callbacks" in answer, answer
        self._process.wait(timeout=10)
        return int(answer["callbacks"])

    def __enter__(self) -> NodeSamlSp:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait(timeout=10)
        for stream in (self._process.stdin, self._process.stdout, self._process.stderr):
            if stream is not None:
                stream.close()
