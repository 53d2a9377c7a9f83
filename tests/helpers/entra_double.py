"""A test double for Microsoft Entra ID in the External Authentication Method (EAM) flow.

Entra is a cloud service the tests cannot reach, so this double plays its two parts, following
Microsoft's published EAM contract (documented in docs/integrations/entra.md):

- the issuer of ``id_token_hint``: RS256 JWTs signed by a key published at the Entra JWKS URL
  (served through ``httpx.MockTransport``, the only place we use it), with ``iss``
  ``https://login.microsoftonline.com/{tid}/v2.0``, ``aud`` = the integration's app id,
  ``sub`` (pairwise), ``oid``, ``tid``, ``preferred_username``, ``name``, ``ver: 2.0``, and an
  ``exp`` that is already in the past;
- the relying party that form-POSTs the implicit-flow request and then checks our answer the
  way Entra does (discovery lists RS256, JWKS entries carry x5c, iss/aud/sub/nonce, exactly
  one requested acr, a one-element amr).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

AUTHORITY = "https://login.microsoftonline.com"
JWKS_URI = f"{AUTHORITY}/common/discovery/v2.0/keys"
REDIRECT_URI = f"{AUTHORITY}/common/federation/externalauthprovider"
# Entra asks for these amr values (every method it understands) and this acr by default.
REQUESTED_AMR = ["face", "fido", "fpt", "hwk", "iris", "otp", "pop", "retina", "sc", "sms",
                 "swk", "tel", "vbm"]  # fmt: skip
REQUESTED_ACR = ["possessionorinherence"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class EntraDouble:
    """Entra's signing key, JWKS endpoint, hint factory and answer checks."""

    def __init__(self, tenant_id: str | None = None, app_id: str | None = None) -> None:
        self.tenant_id = tenant_id or str(uuid.uuid4())
        self.app_id = app_id or str(uuid.uuid4())
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "entra-" + uuid.uuid4().hex[:8]
        self.jwks_requests = 0
        self.jwks_status = 200

    @property
    def issuer(self) -> str:
        return f"{AUTHORITY}/{self.tenant_id}/v2.0"

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "issuer": self.issuer}]}

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            if request.method == "GET" and str(request.url) == JWKS_URI:
                self.jwks_requests += 1
                if self.jwks_status != 200:
                    return httpx.Response(self.jwks_status, text="unavailable")
                return httpx.Response(200, json=self.jwks())
            return httpx.Response(404, json={"error": "not_found"})

        return httpx.MockTransport(handle)

    def hint_claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "ver": "2.0",
            "iss": self.issuer,
            "sub": "pairwise-" + uuid.uuid4().hex,
            "aud": self.app_id,
            "iat": now - 600,
            "nbf": now - 600,
            "exp": now - 300,  # already expired, as Entra sends it
            "tid": self.tenant_id,
            "oid": str(uuid.uuid4()),
            "preferred_username": "alice@contoso.example",
            "name": "Alice",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def hint(
        self,
        claims: dict[str, Any] | None = None,
        *,
        key: rsa.RSAPrivateKey | None = None,
        kid: str | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        return jwt.encode(
            claims if claims is not None else self.hint_claims(),
            key or self.key,
            algorithm="RS256",
            headers={"kid": kid or self.kid, **(headers or {})},
        )

    def unsigned_hint(self, claims: dict[str, Any]) -> str:
        """``alg: none`` — no signature at all."""
        header = _b64url(json.dumps({"alg": "none", "typ": "JWT", "kid": self.kid}).encode())
        return f"{header}.{_b64url(json.dumps(claims).encode())}."

    def hs256_with_public_key(self, claims: dict[str, Any]) -> str:
        """The key-confusion attack: HMAC keyed with Entra's PUBLIC key (PEM) as the secret."""
        secret = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": self.kid}).encode())
        payload = _b64url(json.dumps(claims).encode())
        signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64url(signature)}"

    def authorize_form(
        self,
        *,
        client_id: str,
        id_token_hint: str,
        nonce: str | None = None,
        state: str | None = None,
        acr: list[str] | None = None,
        amr: list[str] | None = None,
    ) -> dict[str, str]:
        """The form Entra POSTs to the provider's authorization endpoint."""
        claims = {
            "id_token": {
                "acr": {"essential": True, "values": acr or REQUESTED_ACR},
                "amr": {"essential": True, "values": amr or REQUESTED_AMR},
            }
        }
        return {
            "scope": "openid",
            "response_type": "id_token",
            "response_mode": "form_post",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "nonce": nonce or uuid.uuid4().hex,
            "state": state or uuid.uuid4().hex,
            "login_hint": "alice@contoso.example",
            "id_token_hint": id_token_hint,
            "claims": json.dumps(claims),
        }

    @staticmethod
    def check_answer(
        id_token: str,
        *,
        discovery: dict[str, Any],
        jwks: dict[str, Any],
        client_id: str,
        hint_sub: str,
        nonce: str,
        requested_acr: list[str],
    ) -> dict[str, Any]:
        """What Entra verifies in the provider's ID token; returns the claims."""
        assert "RS256" in discovery["id_token_signing_alg_values_supported"]
        header = jwt.get_unverified_header(id_token)
        assert header["alg"] == "RS256"
        entry = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
        assert entry.get("x5c"), "Entra requires x5c in the provider's JWKS"
        cert = x509.load_der_x509_certificate(base64.b64decode(entry["x5c"][0]))
        claims: dict[str, Any] = jwt.decode(
            id_token,
            cert.public_key(),  # type: ignore[arg-type]
            algorithms=["RS256"],
            audience=client_id,
            issuer=discovery["issuer"],
            options={"require": ["iss", "aud", "exp", "iat", "sub", "nonce", "acr", "amr"]},
        )
        assert claims["sub"] == hint_sub
        assert claims["nonce"] == nonce
        assert isinstance(claims["acr"], str) and claims["acr"] in requested_acr
        assert isinstance(claims["amr"], list) and len(claims["amr"]) == 1
        return claims
