"""The OpenID provider of the gateway (OpenID Connect Core 1.0, OAuth 2.0 RFC 6749 + PKCE).

``server.py`` wires authlib's authorization server onto our stores, ``provider.py`` holds the
protocol endpoints (discovery, JWKS, authorize, token, userinfo, introspection, revocation, end
session), ``login.py`` the login and device-check pages; ``tokens.py`` issues and verifies the
JWTs we sign with the key ring (:mod:`posture_gateway.signing.key_ring`).
"""
