"""Microsoft Entra ID as the calling IdP: validating the ``id_token_hint`` of an External
Authentication Method (EAM) request.

Contract (Microsoft Entra "external method provider reference"; our reading is written down in
``docs/integrations/entra.md``): Entra form-POSTs an implicit-flow OpenID request to our
authorization endpoint carrying an ``id_token_hint`` that Entra signed (RS256, keys published at
the Entra JWKS, ``kid`` in the header) and that is **already expired** by design. The provider
must validate it fully — signature, issuer (``https://login.microsoftonline.com/{tid}/v2.0`` for
a configured tenant), audience (the application id of the app registration that represents the
integration) — but not its expiry. Since ``exp`` says nothing, the hint's age is bounded by
its ``iat`` instead (``max_age``, minutes by default, plus the leeway): a hint Entra signed a
year ago is refused, as is one whose ``iat`` is in the future beyond the leeway.
:func:`verify_id_token_hint` does exactly that, with every option spelled out;
:class:`EntraHintValidator` binds it to configuration and a cached JWKS fetched through
:func:`idp_connectors.http.make_client`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from pydantic import ConfigDict, Field

from idp_connectors.errors import ConnectorError, Expired, MalformedToken, WrongIssuer
from idp_connectors.identity import ExternalIdentity
from idp_connectors.jwks import JwksCache, decode_with_jwks
from idp_connectors.metrics import EXTERNAL_TOKEN_REFUSALS, EXTERNAL_TOKENS_VERIFIED
from mdm_core.support.durations import DurationsModel

__all__ = ["EntraHintSettings", "EntraHint", "EntraHintValidator", "verify_id_token_hint"]

_GUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


class EntraHintSettings(DurationsModel):
    """Where Entra's hints come from and whom they are for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Tenants allowed to use this EAM (the hint's ``tid``); at least one.
    tenant_ids: tuple[str, ...] = Field(min_length=1)
    # Application (client) id of the Entra app registration representing the integration:
    # the hint's ``aud``.
    app_id: str = Field(pattern=_GUID)
    # Sovereign clouds use another authority host (login.microsoftonline.us, ...).
    authority_host: str = "https://login.microsoftonline.com"
    # Entra's signing keys; default: the multi-tenant v2.0 key set.
    jwks_uri: str | None = None
    jwks_ttl: timedelta = timedelta(hours=1)
    leeway: timedelta = timedelta(seconds=60)
    # A hint whose ``iat`` is older than this (plus ``leeway``) is refused. Entra signs the
    # hint when it sends the user to us, so minutes are plenty; ``exp`` is not checked.
    max_age: timedelta = Field(default=timedelta(minutes=10), gt=timedelta(0))

    def issuers(self) -> tuple[str, ...]:
        host = self.authority_host.rstrip("/")
        return tuple(f"{host}/{tid}/v2.0" for tid in self.tenant_ids)

    def effective_jwks_uri(self) -> str:
        return self.jwks_uri or f"{self.authority_host.rstrip('/')}/common/discovery/v2.0/keys"


@dataclass(frozen=True, slots=True)
class EntraHint:
    """The validated hint: who Entra says is signing in, in which tenant."""

    sub: str  # pairwise subject; our answer's ``sub`` must equal it
    tid: str
    oid: str | None
    preferred_username: str | None
    claims: Mapping[str, Any]

    def identity(self) -> ExternalIdentity:
        """The identity for directory mapping: Entra object id (stable across apps) or sub."""
        return ExternalIdentity(
            issuer=f"entra:{self.tid}",
            subject=self.oid or self.sub,
            username=self.preferred_username,
        )


def verify_id_token_hint(
    token: str,
    keys: JwksCache,
    *,
    issuers: tuple[str, ...],
    audience: str,
    leeway: timedelta,
    max_age: timedelta,
    now: float,
) -> EntraHint:
    """Validate an Entra EAM ``id_token_hint``: signature, issuer, audience, age of ``iat``
    (at most ``max_age`` + ``leeway`` old, at most ``leeway`` in the future) — not expiry.

    Raises a :class:`~idp_connectors.errors.ConnectorError`; every refusal is counted in
    ``posture_external_token_refusals_total{kind="entra_hint"}``.
    """
    try:
        hint = _verify_hint(
            token,
            keys,
            issuers=issuers,
            audience=audience,
            leeway=leeway,
            max_age=max_age,
            now=now,
        )
    except ConnectorError as exc:
        EXTERNAL_TOKEN_REFUSALS.labels("entra_hint", exc.reason).inc()
        raise
    EXTERNAL_TOKENS_VERIFIED.labels("entra_hint").inc()
    return hint


def _verify_hint(
    token: str,
    keys: JwksCache,
    *,
    issuers: tuple[str, ...],
    audience: str,
    leeway: timedelta,
    max_age: timedelta,
    now: float,
) -> EntraHint:
    claims = decode_with_jwks(
        token,
        keys,
        # Entra signs hints with RS256 only; never taken from the token header.
        algorithms=("RS256",),
        options={
            "require": ["iss", "aud", "sub", "tid", "iat", "exp"],
            "verify_signature": True,
            # Deliberately off: Entra's EAM contract sends a hint that is ALREADY EXPIRED, and
            # tells the provider to validate everything but expiry. Replay is harmless: the
            # answer is bound to Entra's own nonce/state, and we still check the device.
            "verify_exp": False,
            "verify_nbf": True,
            "verify_iat": True,  # type only here; the age of iat is checked below
            "verify_iss": True,
            "verify_aud": True,
            "strict_aud": True,  # aud must be exactly our app id, as a single string
        },
        issuer=list(issuers),
        audience=audience,
        leeway=leeway.total_seconds(),
    )
    # exp says nothing (see above), so iat bounds the hint's age, by OUR clock: a hint from a
    # year ago is refused, and so is one "issued" in the future beyond the leeway.
    iat = claims["iat"]
    if not isinstance(iat, int | float) or isinstance(iat, bool):
        raise MalformedToken("hint iat is not a number")
    slack = leeway.total_seconds()
    if float(iat) > now + slack:
        raise Expired("hint iat is in the future")
    if now - float(iat) > max_age.total_seconds() + slack:
        raise Expired("hint was issued too long ago")
    sub, tid = claims["sub"], claims["tid"]
    if not isinstance(sub, str) or not sub or not isinstance(tid, str):
        raise MalformedToken("hint sub/tid are not non-empty strings")
    # The issuer embeds the tenant: a hint from tenant A must not claim tenant B.
    if not claims["iss"].endswith(f"/{tid}/v2.0"):
        raise WrongIssuer("hint tid does not match its issuer")
    oid, upn = claims.get("oid"), claims.get("preferred_username")
    return EntraHint(
        sub=sub,
        tid=tid,
        oid=oid if isinstance(oid, str) and oid else None,
        preferred_username=upn if isinstance(upn, str) and upn else None,
        claims=claims,
    )


class EntraHintValidator:
    """Validates hints for the configured tenants with a cached Entra JWKS."""

    def __init__(
        self,
        settings: EntraHintSettings,
        *,
        http: httpx.Client,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if http is None:
            raise ValueError("EntraHintValidator needs an http client")
        self.settings = settings
        self._clock = clock
        self.keys = JwksCache(
            http, settings.effective_jwks_uri(), ttl=settings.jwks_ttl.total_seconds()
        )

    def validate(self, id_token_hint: str) -> EntraHint:
        """The validated hint; raises a :class:`~idp_connectors.errors.ConnectorError`."""
        return verify_id_token_hint(
            id_token_hint,
            self.keys,
            issuers=self.settings.issuers(),
            audience=self.settings.app_id,
            leeway=self.settings.leeway,
            max_age=self.settings.max_age,
            now=self._clock(),
        )
