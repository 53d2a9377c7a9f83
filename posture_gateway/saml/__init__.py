"""SAML 2.0 identity provider of the gateway (OASIS SAML 2.0 core, bindings, metadata).

``protocol/`` is the pure protocol layer: hardened XML parsing, the HTTP-Redirect and HTTP-POST
bindings, AuthnRequest validation, Response/Assertion building, signing (signxml, the key
ring's RSA key) and encryption, IdP and SP metadata, and verification of Responses from an
upstream SAML IdP. It has no Flask views.

Beside it, the flow on the gateway's ONE login: ``settings.py`` (the ``saml:`` section),
``idp.py`` (the service built at start), ``setup.py`` (build and register), ``views.py``
(``/saml/metadata``, ``/saml/sso``, ``/saml/idp-initiated``), ``flow.py`` (an accepted request
becomes a login transaction the OIDC login pages run; the verdict becomes a signed Response or
a refusal), ``replay.py`` (AuthnRequest IDs spent once) and ``upstream.py`` (an upstream SAML
IdP as a login-page authenticator). See ``docs/saml.md``.
"""
