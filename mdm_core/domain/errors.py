"""The MDM core's exceptions: one tree, every leaf a machine-readable reason.

Every error carries ``.reason`` (a stable snake_case code that goes into API answers, audit
records, metrics labels and access-decision reasons) and ``.status`` (the HTTP status a web
adapter should answer with). Messages are for humans and never contain secrets.

::

    MdmError (500 mdm_error)
    ├── ConfigurationError (500 configuration_error)
    ├── BadRequest (400 bad_request)
    ├── NotFound (404 not_found)
    ├── Conflict (409 conflict)
    ├── RateLimited (429 rate_limited)              ``retry_after`` seconds; nothing was done
    ├── LimiterUnavailable (503 rate_limiter_unavailable)  fail closed: nothing was done
    ├── ProofError (401 invalid_proof)
    │   ├── MalformedProof (401 malformed_proof)
    │   │   └── WrongProofType (401 wrong_proof_type)
    │   ├── UnsupportedAlgorithm (401 unsupported_algorithm)
    │   ├── BadSignature (401 bad_signature)
    │   ├── ReplayedProof (401 replayed_proof)
    │   ├── ExpiredProof (401 expired_proof)        iat too old or in the future
    │   ├── WrongTarget (401 wrong_target)          htm / htu / aud mismatch
    │   │   └── NonceMismatch (401 nonce_mismatch)
    │   ├── BodyMismatch (401 body_mismatch)
    │   ├── UnknownDevice (401 unknown_device)
    │   ├── RevokedCertificate (401 revoked_certificate)
    │   ├── ExpiredCertificate (401 expired_certificate)
    │   └── DeviceNotActive (403 device_not_active)  retired or wiped
    └── EnrollmentError (400 enrollment_refused)
        ├── InvalidToken (401 invalid_token)
        ├── TokenExpired (401 token_expired)
        ├── TokenUsed (401 token_used)
        ├── UnregisteredSerial (403 unregistered_serial)
        ├── InvalidEnrollmentSecret (403 invalid_enrollment_secret)  serial without its secret
        ├── BadCSR (400 bad_csr)
        ├── NoticeNotAccepted (400 notice_not_accepted)
        ├── OwnershipMismatch (403 ownership_mismatch)
        ├── PlatformMismatch (403 platform_mismatch)
        └── DeviceMismatch (403 device_mismatch)     re-enrolment of a device not yours / gone

Add a leaf by subclassing the nearest branch and setting ``reason`` and (if different)
``status``; add it to the drawing and to ``__all__``.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "MdmError",
    "ConfigurationError",
    "BadRequest",
    "NotFound",
    "Conflict",
    "RateLimited",
    "LimiterUnavailable",
    "ProofError",
    "MalformedProof",
    "WrongProofType",
    "UnsupportedAlgorithm",
    "BadSignature",
    "ReplayedProof",
    "ExpiredProof",
    "WrongTarget",
    "NonceMismatch",
    "BodyMismatch",
    "UnknownDevice",
    "RevokedCertificate",
    "ExpiredCertificate",
    "DeviceNotActive",
    "EnrollmentError",
    "InvalidToken",
    "TokenExpired",
    "TokenUsed",
    "UnregisteredSerial",
    "InvalidEnrollmentSecret",
    "BadCSR",
    "NoticeNotAccepted",
    "OwnershipMismatch",
    "PlatformMismatch",
    "DeviceMismatch",
]


class MdmError(Exception):
    """Root of every error the MDM core raises on purpose."""

    reason: ClassVar[str] = "mdm_error"
    status: ClassVar[int] = 500

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.reason.replace("_", " "))

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigurationError(MdmError):
    """The core cannot start or act as configured (missing passphrase, unreadable CA key)."""

    reason = "configuration_error"


class BadRequest(MdmError):
    """The request is not well-formed (not JSON, missing or mistyped field, too large)."""

    reason = "bad_request"
    status = 400


class NotFound(MdmError):
    reason = "not_found"
    status = 404


class Conflict(MdmError):
    """The state changed under us (a concurrent update won) or the thing already exists."""

    reason = "conflict"
    status = 409


class RateLimited(MdmError):
    """Too many requests for this source or target; retry after ``retry_after`` seconds."""

    reason = "rate_limited"
    status = 429

    def __init__(self, message: str | None = None, *, retry_after: int = 60) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


class LimiterUnavailable(MdmError):
    """The shared rate limiter could not be asked: the request is refused (fail closed)."""

    reason = "rate_limiter_unavailable"
    status = 503


# --- device proofs --------------------------------------------------------------------------


class ProofError(MdmError):
    """A device proof (request or login) was refused."""

    reason = "invalid_proof"
    status = 401


class MalformedProof(ProofError):
    reason = "malformed_proof"


class WrongProofType(MalformedProof):
    reason = "wrong_proof_type"


class UnsupportedAlgorithm(ProofError):
    reason = "unsupported_algorithm"


class BadSignature(ProofError):
    reason = "bad_signature"


class ReplayedProof(ProofError):
    reason = "replayed_proof"


class ExpiredProof(ProofError):
    reason = "expired_proof"


class WrongTarget(ProofError):
    reason = "wrong_target"


class NonceMismatch(WrongTarget):
    reason = "nonce_mismatch"


class BodyMismatch(ProofError):
    reason = "body_mismatch"


class UnknownDevice(ProofError):
    reason = "unknown_device"


class RevokedCertificate(ProofError):
    reason = "revoked_certificate"


class ExpiredCertificate(ProofError):
    reason = "expired_certificate"


class DeviceNotActive(ProofError):
    reason = "device_not_active"
    status = 403


# --- enrollment -----------------------------------------------------------------------------


class EnrollmentError(MdmError):
    """An enrollment (or renewal) was refused; nothing was changed."""

    reason = "enrollment_refused"
    status = 400


class InvalidToken(EnrollmentError):
    reason = "invalid_token"
    status = 401


class TokenExpired(EnrollmentError):
    reason = "token_expired"
    status = 401


class TokenUsed(EnrollmentError):
    reason = "token_used"
    status = 401


class UnregisteredSerial(EnrollmentError):
    reason = "unregistered_serial"
    status = 403


class InvalidEnrollmentSecret(EnrollmentError):
    """A serial enrollment without the serial's enrollment secret, or with a wrong one."""

    reason = "invalid_enrollment_secret"
    status = 403


class BadCSR(EnrollmentError):
    reason = "bad_csr"


class NoticeNotAccepted(EnrollmentError):
    reason = "notice_not_accepted"


class OwnershipMismatch(EnrollmentError):
    reason = "ownership_mismatch"
    status = 403


class PlatformMismatch(EnrollmentError):
    reason = "platform_mismatch"
    status = 403


class DeviceMismatch(EnrollmentError):
    reason = "device_mismatch"
    status = 403
