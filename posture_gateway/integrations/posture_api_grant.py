"""OAuth 2.0 client credentials grant (RFC 6749 section 4.4) for machine callers.

Registered once on the OpenID provider's authorization server (``/oauth/token``) by
:func:`posture_gateway.integrations.setup.register` (authlib picks the first registered grant
for a ``grant_type``, so there is exactly one client-credentials grant): posture-API callers
(``integrations.posture_api.oauth_clients``) may obtain the ``posture.decide`` scope
(``posture_api.required_scope``), Shared Signals receivers (``signals.receivers``) the
``ssf.manage`` / ``ssf.read`` scopes. A client gets only scopes it is allowed (asking for
none means all of them), and only with a client secret (``client_secret_basic`` or
``client_secret_post``). The access token is the OP's usual RFC 9068 JWT (``sub`` and
``client_id`` = the client), recorded in the grant store so it can be revoked and introspected;
no refresh token is issued. The APIs then accept it as a bearer token.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from authlib.oauth2.rfc6749 import InvalidScopeError, UnauthorizedClientError
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant

from posture_gateway.integrations.settings import PostureApiSettings
from posture_gateway.oidc.grants import GrantSubject, TokenRecord
from posture_gateway.oidc.server import OIDCProvider

__all__ = ["machine_grant", "posture_decide_grant", "posture_api_scopes"]


def posture_api_scopes(settings: PostureApiSettings) -> dict[str, tuple[str, ...]]:
    """Client -> the scopes it may obtain, for the posture-API callers."""
    return {client: (settings.required_scope,) for client in settings.oauth_clients}


def posture_decide_grant(settings: PostureApiSettings) -> type[ClientCredentialsGrant]:
    """The grant for the posture-API callers alone (see :func:`machine_grant`)."""
    return machine_grant(posture_api_scopes(settings))


def machine_grant(
    scopes_by_client: Mapping[str, tuple[str, ...]],
) -> type[ClientCredentialsGrant]:
    """The grant class bound to ``scopes_by_client`` (authlib registers classes, not instances).

    A client appearing in several features gets the union of their scopes."""
    allowed = {client: tuple(dict.fromkeys(scopes)) for client, scopes in scopes_by_client.items()}

    class MachineGrant(ClientCredentialsGrant):  # type: ignore[misc]
        # A machine client proves itself with its secret; public clients never get here.
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

        def validate_token_request(self) -> None:
            client = self.authenticate_token_endpoint_client()
            scopes = allowed.get(client.get_client_id())
            if not scopes:
                raise UnauthorizedClientError(
                    "this client may not use grant_type=client_credentials"
                )
            asked = (self.request.payload.scope or "").split()
            requested = tuple(dict.fromkeys(asked)) if asked else scopes
            refused = [s for s in requested if s not in scopes]
            if refused:
                raise InvalidScopeError(
                    f"client credentials grant only for scope {' '.join(scopes)}"
                )
            self.request.client = client
            self.request.granted_scope = " ".join(requested)

        def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
            provider: OIDCProvider = self.server.provider
            client_id = self.request.client.get_client_id()
            scope: str = self.request.granted_scope
            issued = provider.issuer.access_token(
                subject=client_id, client_id=client_id, scope=scope
            )
            now = datetime.now(UTC)
            provider.tokens.save(
                TokenRecord(
                    id=issued.jti,
                    client_id=client_id,
                    scope=scope,
                    subject=GrantSubject(
                        user_id=client_id,
                        auth_time=int(now.timestamp()),
                        acr="",
                        amr=(),
                        machine=True,  # no device binding: see posture_gateway.oidc.binding
                    ),
                    family_id=issued.jti,
                    issued_at=now,
                    access_expires_at=issued.expires_at,
                )
            )
            body = {
                "access_token": issued.token,
                "token_type": "Bearer",
                "expires_in": int((issued.expires_at - now).total_seconds()),
                "scope": scope,
            }
            return 200, body, list(self.TOKEN_RESPONSE_HEADER)

    return MachineGrant
