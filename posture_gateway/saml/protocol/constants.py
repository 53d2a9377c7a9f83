"""Names the SAML 2.0 specifications fix: namespaces, bindings, formats, status codes, algorithms.

Sources: SAML 2.0 core (saml-core-2.0-os) §3.2.2.2 status codes, §8.3 NameID formats;
bindings (saml-bindings-2.0-os) §3.4 and §3.5; XML Signature 1.1 and XML Encryption 1.1
algorithm identifiers.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "NS_SAML",
    "NS_SAMLP",
    "NS_MD",
    "NS_DS",
    "NS_XENC",
    "NS_XENC11",
    "NS_XS",
    "NS_XSI",
    "NSMAP",
    "BINDING_HTTP_REDIRECT",
    "BINDING_HTTP_POST",
    "SUPPORTED_ACS_BINDINGS",
    "NAMEID_EMAIL",
    "NAMEID_PERSISTENT",
    "NAMEID_TRANSIENT",
    "NAMEID_UNSPECIFIED",
    "NAMEID_FORMATS",
    "STATUS_SUCCESS",
    "STATUS_REQUESTER",
    "STATUS_RESPONDER",
    "STATUS_VERSION_MISMATCH",
    "STATUS_NO_PASSIVE",
    "STATUS_AUTHN_FAILED",
    "STATUS_REQUEST_DENIED",
    "STATUS_INVALID_NAMEID_POLICY",
    "CM_BEARER",
    "AC_PASSWORD_PROTECTED_TRANSPORT",
    "AC_UNSPECIFIED",
    "ATTRNAME_FORMAT_BASIC",
    "SIG_RSA_SHA256",
    "SIG_RSA_SHA384",
    "SIG_RSA_SHA512",
    "SIG_ECDSA_SHA256",
    "SIG_RSA_SHA1",
    "ACCEPTED_SIGNATURE_ALGORITHMS",
    "C14N_EXCLUSIVE",
]

NS_SAML: Final = "urn:oasis:names:tc:SAML:2.0:assertion"
NS_SAMLP: Final = "urn:oasis:names:tc:SAML:2.0:protocol"
NS_MD: Final = "urn:oasis:names:tc:SAML:2.0:metadata"
NS_DS: Final = "http://www.w3.org/2000/09/xmldsig#"
NS_XENC: Final = "http://www.w3.org/2001/04/xmlenc#"
NS_XENC11: Final = "http://www.w3.org/2009/xmlenc11#"
NS_XS: Final = "http://www.w3.org/2001/XMLSchema"
NS_XSI: Final = "http://www.w3.org/2001/XMLSchema-instance"
NSMAP: Final[dict[str, str]] = {
    "saml": NS_SAML,
    "samlp": NS_SAMLP,
    "md": NS_MD,
    "ds": NS_DS,
    "xenc": NS_XENC,
}

BINDING_HTTP_REDIRECT: Final = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
BINDING_HTTP_POST: Final = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
SUPPORTED_ACS_BINDINGS: Final = frozenset({BINDING_HTTP_POST})

NAMEID_EMAIL: Final = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
NAMEID_PERSISTENT: Final = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
NAMEID_TRANSIENT: Final = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
NAMEID_UNSPECIFIED: Final = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
NAMEID_FORMATS: Final = (NAMEID_EMAIL, NAMEID_PERSISTENT, NAMEID_UNSPECIFIED)

_STATUS = "urn:oasis:names:tc:SAML:2.0:status:"
STATUS_SUCCESS: Final = _STATUS + "Success"
STATUS_REQUESTER: Final = _STATUS + "Requester"
STATUS_RESPONDER: Final = _STATUS + "Responder"
STATUS_VERSION_MISMATCH: Final = _STATUS + "VersionMismatch"
STATUS_NO_PASSIVE: Final = _STATUS + "NoPassive"
STATUS_AUTHN_FAILED: Final = _STATUS + "AuthnFailed"
STATUS_REQUEST_DENIED: Final = _STATUS + "RequestDenied"
STATUS_INVALID_NAMEID_POLICY: Final = _STATUS + "InvalidNameIDPolicy"

CM_BEARER: Final = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
AC_PASSWORD_PROTECTED_TRANSPORT: Final = (
    "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"  # noqa: S105 (a URI)
)
AC_UNSPECIFIED: Final = "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified"
ATTRNAME_FORMAT_BASIC: Final = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"

SIG_RSA_SHA256: Final = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SIG_RSA_SHA384: Final = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384"
SIG_RSA_SHA512: Final = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
SIG_ECDSA_SHA256: Final = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
SIG_RSA_SHA1: Final = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"  # refused; named for messages
ACCEPTED_SIGNATURE_ALGORITHMS: Final = frozenset(
    {SIG_RSA_SHA256, SIG_RSA_SHA384, SIG_RSA_SHA512, SIG_ECDSA_SHA256}
)
C14N_EXCLUSIVE: Final = "http://www.w3.org/2001/10/xml-exc-c14n#"
