"""A SAML sign-in driven over HTTP the way the pages drive it (no browser), and the helpers
the SAML tests share: the ``saml:`` config lines, the gateway's IdP certificate from its
metadata, the auto-submitting answer form, a Redirect-binding AuthnRequest built and signed
here (for what node-saml cannot send: a Subject, a wrong signature, a replay).

:func:`http_saml_login` follows the gateway's redirects from ``start_url`` (an SP's
AuthnRequest URL or ``/saml/idp-initiated``), posts the password form when it is shown, does
the device check (the proof fetched from the real loopback helper with the page's Origin),
the warning notice if the policies warn, and returns the page that answers the SP: its form
action and fields (``SAMLResponse``, ``RelayState``) — or the page where the login stopped.
"""

from __future__ import annotations

import base64
import html
import json
import re
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode, urljoin

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.e2e.login_stack import PASSWORD, USERNAME
from tests.e2e.saml_sp import SpKey

__all__ = [
    "SIG_RSA_SHA256",
    "SamlAnswer",
    "answer_of",
    "authn_request_xml",
    "http_saml_login",
    "idp_certificate_pem",
    "redirect_url",
    "saml_config_lines",
    "write_metadata",
]

SIG_RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
_DEVICE_CONFIG = re.compile(
    r'<script type="application/json" id="device-config"[^>]*>(.*?)</script>', re.S
)
_FORM = re.compile(r'<form method="post" action="([^"]+)" id="saml-answer">(.*?)</form>', re.S)
_INPUT = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


@dataclass
class SamlAnswer:
    """Where a login ended: the answer form to the SP (``action``, ``fields``), or a page."""

    status: int
    url: str
    text: str
    action: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    outcome: str = "allow"
    csp: str = ""

    @property
    def saml_response(self) -> str:
        return self.fields["SAMLResponse"]

    @property
    def response_xml(self) -> str:
        return base64.b64decode(self.saml_response).decode("utf-8")


def saml_config_lines(service_providers: list[dict[str, object]]) -> tuple[str, ...]:
    """A ``saml:`` section (YAML lines) with these service provider entries."""
    lines = ["saml:", "  service_providers:"]
    for sp in service_providers:
        first = True
        for key, value in sp.items():
            prefix = "    - " if first else "      "
            lines.append(f"{prefix}{key}: {json.dumps(value)}")
            first = False
    return tuple(lines)


def idp_certificate_pem(gateway_url: str) -> str:
    """The signing certificate published in ``/saml/metadata`` (what an SP admin uploads)."""
    metadata = httpx.get(gateway_url + "/saml/metadata", timeout=10)
    assert metadata.status_code == 200, metadata.text
    match = re.search(r"X509Certificate>([^<]+)<", metadata.text)
    assert match, metadata.text
    der = base64.b64decode(match.group(1))
    cert = x509.load_der_x509_certificate(der)
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _field(text: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', text)
    assert match, f"no {name} in:\n{text[:2000]}"
    return html.unescape(match.group(1))


def answer_of(response: httpx.Response, outcome: str = "allow") -> SamlAnswer:
    """The answer form a gateway page carries (or the bare page when it has none)."""
    found = _FORM.search(response.text)
    answer = SamlAnswer(
        response.status_code,
        str(response.url),
        response.text,
        outcome=outcome,
        csp=response.headers.get("Content-Security-Policy", ""),
    )
    if found:
        answer.action = html.unescape(found.group(1))
        answer.fields = {k: html.unescape(v) for k, v in _INPUT.findall(found.group(2))}
    return answer


def _follow(http: httpx.Client, response: httpx.Response) -> httpx.Response:
    while response.status_code in (302, 303):
        response = http.get(urljoin(str(response.url), response.headers["Location"]))
    return response


def http_saml_login(
    http: httpx.Client,
    gateway_url: str,
    start_url: str,
    *,
    username: str = USERNAME,
    password: str = PASSWORD,
) -> SamlAnswer:
    """One SAML sign-in from ``start_url`` to the answer page (see the module docstring)."""
    page = _follow(http, http.get(start_url))
    if page.status_code == 200 and 'name="password"' in page.text:
        posted = http.post(
            gateway_url + "/login/password",
            data={"csrf_token": _field(page.text, "csrf_token"), "username": username,
                  "password": password},
        )  # fmt: skip
        page = _follow(http, posted)
    config_match = _DEVICE_CONFIG.search(page.text)
    if page.status_code != 200 or not config_match:
        return answer_of(page)  # stopped before the device check (an error, an answer)
    config = json.loads(config_match.group(1))
    proof = httpx.get(
        f"http://127.0.0.1:{config['port']}/v1/login-proof",
        params={"nonce": config["nonce"], "aud": config["aud"]},
        headers={"Origin": gateway_url},
        timeout=10,
    )
    assert proof.status_code == 200, proof.text
    answer = http.post(
        gateway_url + "/login/device",
        data={"csrf_token": _field(page.text, "csrf_token"), "nonce": config["nonce"],
              "proof": proof.json()["proof"]},
    )  # fmt: skip
    outcome = "allow"
    if answer.status_code == 200 and 'data-outcome="warn"' in answer.text:
        outcome = "warn"
        answer = http.post(
            gateway_url + "/login/continue",
            data={"csrf_token": _field(answer.text, "csrf_token"),
                  "ticket": _field(answer.text, "ticket")},
        )  # fmt: skip
    return answer_of(_follow(http, answer), outcome)


# ---- AuthnRequests built here (what node-saml cannot send) ----------------------------------


def authn_request_xml(
    *,
    issuer: str,
    destination: str,
    acs_url: str | None,
    request_id: str,
    subject: str | None = None,
    passive: bool = False,
    force_authn: bool = False,
    issue_instant: datetime | None = None,
) -> str:
    instant = (issue_instant or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    attrs = [
        'xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"',
        'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"',
        f'ID="{request_id}"',
        'Version="2.0"',
        f'IssueInstant="{instant}"',
        f'Destination="{destination}"',
        'ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"',
    ]
    if acs_url is not None:
        attrs.append(f'AssertionConsumerServiceURL="{acs_url}"')
    if passive:
        attrs.append('IsPassive="true"')
    if force_authn:
        attrs.append('ForceAuthn="true"')
    subject_xml = (
        "<saml:Subject><saml:NameID "
        'Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified">'
        f"{subject}</saml:NameID></saml:Subject>"
        if subject is not None
        else ""
    )
    return (
        f"<samlp:AuthnRequest {' '.join(attrs)}>"
        f"<saml:Issuer>{issuer}</saml:Issuer>{subject_xml}</samlp:AuthnRequest>"
    )


def redirect_url(
    sso_url: str,
    request_xml: str,
    *,
    relay_state: str | None = None,
    key: SpKey | None = None,
    tamper: bool = False,
) -> str:
    """The HTTP-Redirect binding URL (SAML bindings 3.4.4): DEFLATE, base64, URL-encode; with
    ``key`` the query signature over ``SAMLRequest=..&RelayState=..&SigAlg=..`` (RSA-SHA256).
    ``tamper`` changes one character of the signed request after signing."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw = deflater.compress(request_xml.encode()) + deflater.flush()
    parts = [("SAMLRequest", base64.b64encode(raw).decode())]
    if relay_state is not None:
        parts.append(("RelayState", relay_state))
    if key is None:
        return f"{sso_url}?{urlencode(parts)}"
    parts.append(("SigAlg", SIG_RSA_SHA256))
    signed = "&".join(f"{k}={quote(v, safe='')}" for k, v in parts)
    private = serialization.load_pem_private_key(key.key_pem.encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    signature = private.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
    query = signed + "&Signature=" + quote(base64.b64encode(signature).decode(), safe="")
    if tamper:
        other = request_xml.replace('ID="', 'ID="x', 1)
        deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
        raw = deflater.compress(other.encode()) + deflater.flush()
        forged = quote(base64.b64encode(raw).decode(), safe="")
        query = re.sub(r"^SAMLRequest=[^&]*", f"SAMLRequest={forged}", query)
    return f"{sso_url}?{query}"


def write_metadata(path: Path, xml: str) -> Path:
    path.write_text(xml, encoding="utf-8")
    return path
