"""SAML 2.0 identity provider of the gateway (OASIS SAML 2.0 core, bindings, metadata).

``protocol/`` is the pure protocol layer: hardened XML parsing, the HTTP-Redirect and HTTP-POST
bindings, AuthnRequest validation, Response/Assertion building, signing (signxml, the key
ring's RSA key) and encryption, IdP and SP metadata, and verification of Responses from an
upstream SAML IdP. It has no Flask views; the blueprint and login flow are built on it
beside it in this package. See ``docs/saml.md``.
"""
