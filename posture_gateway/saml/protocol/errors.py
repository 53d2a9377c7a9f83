"""The SAML protocol layer's exceptions: every refusal is a typed :class:`SamlError`.

Nothing else escapes a parser or verifier of this package: lxml, signxml, base64, zlib and
``cryptography`` errors are caught at the boundary and re-raised as one of these, with a
message that says what was wrong (never the secret material). Each class carries a stable
machine-readable ``reason`` for audit records and metrics::

    SamlError                          reason
    ├── XmlError                       xml_invalid
    │   ├── XmlTooLarge                xml_too_large       (bytes, inflated bytes)
    │   ├── XmlTooComplex              xml_too_complex     (depth, element count)
    │   └── XmlForbidden               xml_forbidden       (DOCTYPE, ENTITY, PI, non-UTF-8)
    ├── BindingError                   binding_invalid     (base64, DEFLATE, parameters)
    │   └── DeflateBomb                deflate_bomb
    ├── SignatureError                 signature_invalid
    │   ├── SignatureMissing           signature_missing
    │   └── UnsupportedAlgorithm       algorithm_unsupported (SHA-1, unknown SigAlg)
    ├── MessageError                   message_invalid     (schema-level: version, ID, fields)
    │   ├── UnknownServiceProvider     unknown_sp
    │   ├── UnknownAcsUrl              unknown_acs
    │   ├── DestinationMismatch        destination_mismatch
    │   ├── StaleMessage               message_stale       (IssueInstant / NotBefore / NotOnOrAfter)
    │   └── StatusNotSuccess           status_not_success  (upstream IdP said no)
    ├── EncryptionError                encryption_invalid
    └── MetadataError                  metadata_invalid    (SP metadata, registry, config)
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "SamlError",
    "XmlError",
    "XmlTooLarge",
    "XmlTooComplex",
    "XmlForbidden",
    "BindingError",
    "DeflateBomb",
    "SignatureError",
    "SignatureMissing",
    "UnsupportedAlgorithm",
    "MessageError",
    "UnknownServiceProvider",
    "UnknownAcsUrl",
    "DestinationMismatch",
    "StaleMessage",
    "StatusNotSuccess",
    "EncryptionError",
    "MetadataError",
]


class SamlError(Exception):
    """Base of every refusal in the SAML protocol layer; ``reason`` is machine-readable."""

    reason: ClassVar[str] = "saml_error"


class XmlError(SamlError):
    """The bytes are not a well-formed, acceptable XML document."""

    reason = "xml_invalid"


class XmlTooLarge(XmlError):
    """The document (or its inflated form) is larger than the configured limit."""

    reason = "xml_too_large"


class XmlTooComplex(XmlError):
    """The document nests too deeply or has too many elements."""

    reason = "xml_too_complex"


class XmlForbidden(XmlError):
    """The document uses a construct we refuse outright: DOCTYPE, ENTITY, a PI, non-UTF-8."""

    reason = "xml_forbidden"


class BindingError(SamlError):
    """The HTTP binding layer is malformed: base64, DEFLATE, missing or repeated parameters."""

    reason = "binding_invalid"


class DeflateBomb(BindingError):
    """The DEFLATE stream inflates past the hard cap (or does not end)."""

    reason = "deflate_bomb"


class SignatureError(SamlError):
    """A signature is invalid, made by an untrusted key, or covers the wrong element."""

    reason = "signature_invalid"


class SignatureMissing(SignatureError):
    """A signature is required (by config or metadata) and the message has none."""

    reason = "signature_missing"


class UnsupportedAlgorithm(SignatureError):
    """The signature or digest algorithm is not one we accept (SHA-1 is refused)."""

    reason = "algorithm_unsupported"


class MessageError(SamlError):
    """The message is well-formed XML but not an acceptable SAML message."""

    reason = "message_invalid"


class UnknownServiceProvider(MessageError):
    """The Issuer is not a registered service provider."""

    reason = "unknown_sp"


class UnknownAcsUrl(MessageError):
    """The AssertionConsumerServiceURL/Index is not one of the SP's metadata endpoints."""

    reason = "unknown_acs"


class DestinationMismatch(MessageError):
    """Destination (or Recipient, or Audience) is not the value we expect."""

    reason = "destination_mismatch"


class StaleMessage(MessageError):
    """IssueInstant, NotBefore or NotOnOrAfter puts the message outside its validity window."""

    reason = "message_stale"


class StatusNotSuccess(MessageError):
    """An upstream IdP's Response carries a non-Success status."""

    reason = "status_not_success"

    def __init__(self, message: str, *, status: str, sub_status: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.sub_status = sub_status


class EncryptionError(SamlError):
    """An EncryptedAssertion cannot be built or decrypted."""

    reason = "encryption_invalid"


class MetadataError(SamlError):
    """SAML metadata (or the per-SP configuration) is malformed; the message names the file."""

    reason = "metadata_invalid"
