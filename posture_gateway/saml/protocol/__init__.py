"""The SAML 2.0 protocol layer: pure functions and frozen data, no Flask, no I/O but files.

Modules (each owns one job; see ``docs/saml.md``):

- :mod:`.errors` — the ``SamlError`` tree; nothing else escapes a parser here.
- :mod:`.constants` — namespaces, bindings, NameID formats, status codes, algorithms.
- :mod:`.values` — message IDs, ``xs:dateTime`` instants, indexes, read strictly.
- :mod:`.xml_safety` — the one hardened XML parser (no DTD, no entities, size/depth limits).
- :mod:`.bindings` — HTTP-Redirect (DEFLATE + query signature) and HTTP-POST (form) bindings.
- :mod:`.signing` — enveloped XML signatures with signxml: ``SamlSigner`` and verification.
- :mod:`.authn_request` — AuthnRequest parsing and validation against the SP registry (and
  building one for an upstream IdP).
- :mod:`.response` — Response/Assertion building (success and error Responses).
- :mod:`.encryption` — EncryptedAssertion (XML-Enc 1.1 with ``cryptography``).
- :mod:`.metadata` — IdP (and our SP) metadata out, SP (and upstream IdP) metadata in.
- :mod:`.service_providers` — per-SP config, the SP model, the registry.
- :mod:`.response_verifier` — verifying a Response from an upstream SAML IdP.
"""
