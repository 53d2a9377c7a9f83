"""OAuth 2.0 client credentials grant (RFC 6749 section 4.4) for posture-API callers.

Registered on the OpenID provider's authorization server (``/oauth/token``) by
:func:`posture_gateway.integrations.setup.register`. Only clients named in
``integrations.posture_api.oauth_clients`` may use it, only for the ``posture.decide`` scope
(``posture_api.required_scope``), and only with a client secret (``client_secret_basic`` or
``client_secret_post``). The access token is the OP's usual RFC 9068 JWT (``sub`` and
``client_id`` = the client), recorded in the grant store so it can be revoked and introspected;
no refresh token is issued. The decision API then accepts it as a bearer token.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from authlib.oauth2.rfc6749 import InvalidScopeError, UnauthorizedClientError
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant

from posture_gateway.integrations.settings import PostureApiSettings
from posture_gateway.oidc.grants import GrantSubject, TokenRecord
from posture_gateway.oidc.server import OIDCProvider

__all__ = ["posture_decide_grant"]


def posture_decide_grant(settings: PostureApiSettings) -> type[ClientCredentialsGrant]:
    """The grant class bound to ``settings`` (authlib registers classes, not instances)."""
    allowed = frozenset(settings.oauth_clients)
    scope = settings.required_scope

    class PostureDecideGrant(ClientCredentialsGrant):  # type: ignore[misc]
        # A machine client proves itself with its secret; public clients never get here.
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

        def validate_token_request(self) -> None:
            client = self.authenticate_token_endpoint_client()
            if client.get_client_id() not in allowed:
                raise UnauthorizedClientError(
                    "this client may not use grant_type=client_credentials"
                )
            requested = (self.request.payload.scope or scope).split()
            if requested != [scope]:
                raise InvalidScopeError(f"client credentials grant only for scope {scope}")
            self.request.client = client

        def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
            provider: OIDCProvider = self.server.provider
            client_id = self.request.client.get_client_id()
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

    return PostureDecideGrant
