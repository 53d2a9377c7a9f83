"""Settings of the IdP integrations: the ``integrations`` section of ``Settings``.

Sections: ``posture_api`` (decision endpoint for IdPs and proxies), ``okta`` (token inline
hook), ``entra`` (External Authentication Method), ``upstreams`` (broker mode: upstream OpenID
providers). Read once at start-up and validated by pydantic; secrets are ``SecretStr``.
Environment example: ``POSTURE_INTEGRATIONS__OKTA__SECRET=...``.
"""

from __future__ import annotations

from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network

from pydantic import ConfigDict, Field, SecretStr, field_validator

from idp_connectors.entra import EntraHintSettings
from idp_connectors.identity import IdentityLinking
from idp_connectors.oidc_upstream import UpstreamOidcSettings
from mdm_core.support.durations import DurationsModel

__all__ = [
    "IntegrationSettings",
    "PostureApiSettings",
    "OktaHookSettings",
    "EntraEamSettings",
    "ENTRA_REDIRECT_URIS",
]

# Entra's reply URLs for EAM (global and US government / China clouds).
ENTRA_REDIRECT_URIS: tuple[str, ...] = (
    "https://login.microsoftonline.com/common/federation/externalauthprovider",
    "https://login.microsoftonline.us/common/federation/externalauthprovider",
    "https://login.partner.microsoftonline.cn/common/federation/externalauthprovider",
)


class _Strict(DurationsModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PostureApiSettings(_Strict):
    """``POST /api/v1/decision``: who may call it and how."""

    # Scope an OAuth client-credentials access token must carry.
    required_scope: str = "posture.decide"
    # Clients of the OP (confidential, from oidc.clients_file) allowed to obtain such a token
    # with the client credentials grant at /oauth/token.
    oauth_clients: tuple[str, ...] = ()
    # Addresses of the mTLS-terminating proxies allowed to forward a client certificate.
    # A certificate header from any other address is refused (and logged).
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
    client_cert_header: str = "X-Client-Cert"  # URL-encoded PEM, as nginx $ssl_client_escaped_cert
    # mTLS callers: SHA-256 fingerprint (hex, no colons) of the client certificate -> caller name.
    mtls_clients: dict[str, str] = Field(default_factory=dict)
    # Audience a device proof presented to this API must be bound to; default public_url + path.
    proof_audience: str | None = None
    # How long a nonce from POST /api/v1/nonce stays valid (the device signs a proof over it,
    # the caller presents that proof to /api/v1/decision within this time).
    nonce_ttl: timedelta = Field(default=timedelta(minutes=2), gt=timedelta(0))
    # How the ``user`` a caller names is linked to a directory user the first time (issuer
    # ``posture-api:<caller>``, subject = the name). Default ``username``: the API's contract
    # is that callers name OUR directory users by username. ``none``: pre-linked users only.
    user_linking: IdentityLinking = Field(
        default_factory=lambda: IdentityLinking(link_by="username")
    )

    @field_validator("mtls_clients")
    @classmethod
    def _fingerprints(cls, value: dict[str, str]) -> dict[str, str]:
        normalised = {k.replace(":", "").lower(): v for k, v in value.items()}
        for fingerprint in normalised:
            if len(fingerprint) != 64 or any(c not in "0123456789abcdef" for c in fingerprint):
                raise ValueError(f"not a SHA-256 hex fingerprint: {fingerprint!r}")
        return normalised


class OktaHookSettings(_Strict):
    """The Okta token inline hook (annotation only: Okta fails open)."""

    # The value Okta sends in ``auth_header`` (the hook's "Authentication secret").
    # None: the hook refuses every call.
    secret: SecretStr | None = None
    auth_header: str = "Authorization"
    # Okta waits 3 s (then retries once, then issues the token unannotated). Answer before.
    budget: timedelta = timedelta(milliseconds=2500)
    # Issuer name under which Okta user ids are mapped to our directory.
    identity_issuer: str = "okta"
    # How an Okta user id not linked yet may be linked the first time (the hook's only name is
    # ``profile.login``, so ``username``; Okta sends no verified email). Default: never.
    linking: IdentityLinking = Field(default_factory=IdentityLinking)


class EntraEamSettings(_Strict):
    """Microsoft Entra External Authentication Method (the gateway as the EAM provider)."""

    hint: EntraHintSettings
    # The "Client ID" the admin enters in Entra for this EAM; Entra sends it as client_id and
    # our ID token's ``aud`` is it.
    client_id: str = Field(min_length=1)
    redirect_uris: tuple[str, ...] = ENTRA_REDIRECT_URIS
    # acr values we can satisfy, in order of preference; the answer carries exactly one of
    # these that Entra requested.
    acr_values: tuple[str, ...] = ("possessionorinherence",)
    # amr values we can truthfully claim, in order of preference (RFC 8176): the device proved
    # possession of its enrolled key. The answer carries exactly one.
    amr_values: tuple[str, ...] = ("pop", "hwk", "swk")
    # How long the user may take between Entra's request and our answer.
    login_ttl: timedelta = timedelta(minutes=10)
    id_token_ttl: timedelta = timedelta(minutes=5)
    # How an Entra user (entra:{tid}, oid) not linked yet may be linked the first time: the hint
    # carries the UPN as preferred_username, so ``username`` (ideally with
    # allowed_username_domains). Default: never (only identities an admin linked).
    linking: IdentityLinking = Field(default_factory=IdentityLinking)


class IntegrationSettings(_Strict):
    posture_api: PostureApiSettings = Field(default_factory=PostureApiSettings)
    okta: OktaHookSettings = Field(default_factory=OktaHookSettings)
    entra: EntraEamSettings | None = None  # None: the EAM endpoint refuses every request
    upstreams: tuple[UpstreamOidcSettings, ...] = ()
    # Timeout of every outbound call (upstream IdPs, Entra JWKS).
    outbound_timeout: timedelta = timedelta(seconds=5)
