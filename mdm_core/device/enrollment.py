"""Enrollment: how a device gets its identity (key + certificate) and keeps or renews it.

Owns the enrollment flows of the MDM (the DESIGN's section 2 "Enrollment"):

- **Token enrollment.** An admin (or the directory) creates a user-bound, single-use,
  expiring token (:meth:`EnrollmentService.create_token`; only its SHA-256 is stored). The
  device presents it with a CSR, platform and ownership; redemption is one conditional
  ``UPDATE`` so two concurrent redemptions cannot both succeed.
- **Automated enrollment** by pre-registered serial (:meth:`EnrollmentService.register_serial`):
  a registered serial enrolls as ``corporate`` without a token and, after a factory reset,
  re-enrolls by itself (new key, the old certificate revoked, the same device id). A serial
  is an identifier, not a secret: registration generates a per-device **enrollment secret**
  (shown once, stored as its SHA-256, compared in constant time) that the device's
  provisioning holds, and every serial enrollment must present it (the way Apple's automated
  enrollment binds a device to the organisation's account). A missing or wrong secret is
  refused (403), audited, and changes nothing. An unregistered serial never enrolls as
  corporate without a corporate token.
- **BYOD** enrollment must name the privacy profile whose transparency notice it showed
  (``privacy_notice_accepted``), and it must be the profile in force.
- **Re-enrollment** (same user and serial, an explicit ``device_id`` with a token of that
  user, or a registered serial with its secret) issues a new certificate and revokes the old
  one. Quarantine is left only through a person: a quarantined device that re-enrolls with a
  fresh user-bound token becomes ``pending_verification`` (then ``active`` after a passing
  check-in); re-enrolling by serial keeps it ``quarantined`` (see
  :mod:`mdm_core.domain.quarantine` for the admin release).
- **Renewal** (:meth:`EnrollmentService.renew`) of an authenticated device's certificate.
- **Revocation** (:meth:`EnrollmentService.revoke_device`): certificates revoked, device retired.
- **Offboarded users** (:mod:`mdm_core.offboarding`) get no token, no serial registration and
  no enrollment (:class:`mdm_core.offboarding.model.UserOffboarded`, 403) until reinstated.

Revocation and re-enrollment also revoke the device's access credentials (OAuth tokens) in the
same unit of work (:mod:`mdm_core.domain.device_lifecycle`).

Every change writes its domain event to the outbox and an audit record in the same unit of
work; every refusal is an :class:`mdm_core.domain.errors.EnrollmentError` leaf and changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mdm_core.bus.events import DomainEvent, EventType
from mdm_core.device.ca import CertificateAuthority, DevicePublicKey, IssuedCertificate
from mdm_core.device.proof import AuthenticatedDevice
from mdm_core.domain.device_lifecycle import change_status, end_device_access
from mdm_core.domain.errors import (
    BadRequest,
    Conflict,
    DeviceMismatch,
    InvalidEnrollmentSecret,
    InvalidToken,
    NotFound,
    NoticeNotAccepted,
    OwnershipMismatch,
    PlatformMismatch,
    TokenExpired,
    TokenUsed,
    UnregisteredSerial,
)
from mdm_core.domain.model import DeviceRecord, DeviceStatus
from mdm_core.offboarding.model import UserOffboarded
from mdm_core.posture.model import Ownership, Platform
from mdm_core.storage.certauth import CertificateRecord
from mdm_core.storage.enrollment import EnrollmentTokenRecord, RegisteredSerial
from mdm_core.storage.uow import Storage, UnitOfWork

__all__ = [
    "UNASSIGNED_USER",
    "EnrollmentRequest",
    "EnrollmentResult",
    "EnrollmentService",
    "NoticeLookup",
    "SerialRegistration",
    "hash_token",
]

#: ``user_id`` of a device enrolled by a serial registered without a user. No login can
#: match it (user ids are never empty), so such a device gets no access until assigned.
UNASSIGNED_USER = ""
TOKEN_BYTES = 32
MAX_TOKEN_TTL = timedelta(days=90)
_SERIAL = re.compile(r"[A-Za-z0-9._-]{1,128}")
_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
_DEVICE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_GONE = frozenset({DeviceStatus.RETIRED, DeviceStatus.WIPED})

#: ``current_notice_id(ownership)``: the id of the privacy profile whose notice an
#: enrollment of that ownership must have shown (``None``: no notice required/configured).
NoticeLookup = Callable[[Ownership], str | None]


def hash_token(token: str) -> str:
    """SHA-256 hex of an enrollment token (what the store keeps)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _check_secret(registration: RegisteredSerial, presented: str | None) -> None:
    """Refuse a serial enrollment without the serial's secret (constant-time comparison)."""
    if registration.secret_hash is None:
        raise InvalidEnrollmentSecret(
            "this serial has no enrollment secret: register it again to get one"
        )
    if presented is None:
        raise InvalidEnrollmentSecret("enrollment by serial needs the serial's enrollment secret")
    if not hmac.compare_digest(hash_token(presented).encode(), registration.secret_hash.encode()):
        raise InvalidEnrollmentSecret("wrong enrollment secret for this serial")


def _refuse_offboarded(uow: UnitOfWork, user_id: str) -> None:
    """Offboarding disabled enrollment for this user (until an admin reinstates them)."""
    if uow.offboarding.blocked(user_id) is not None:
        raise UserOffboarded(
            f"user {user_id} is offboarded: enrollment is disabled until an admin reinstates them"
        )


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class EnrollmentRequest:
    """What a device sends to enroll (already type-checked by the web adapter)."""

    csr_pem: str
    platform: Platform
    ownership: Ownership
    token: str | None = field(default=None, repr=False)  # a credential: never in a repr
    serial_number: str | None = None
    privacy_notice_accepted: str | None = None
    device_id: str | None = None  # re-enroll this device (needs a token of its user)
    #: the registered serial's secret (serial enrollment); a credential: never in a repr
    enrollment_secret: str | None = field(default=None, repr=False)
    source: str | None = None  # the client address, for the audit record of a refusal


@dataclass(frozen=True, slots=True)
class EnrollmentResult:
    device: DeviceRecord
    certificate_pem: str
    ca_certificate_pem: str
    checkin_url: str
    re_enrolled: bool
    revoked_serial: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device.id,
            "certificate": self.certificate_pem,
            "ca_certificate": self.ca_certificate_pem,
            "checkin_url": self.checkin_url,
            "status": self.device.status.value,
            "re_enrolled": self.re_enrolled,
        }


@dataclass(frozen=True, slots=True)
class SerialRegistration:
    """A registered serial and its enrollment secret (plaintext: shown once, never stored)."""

    registration: RegisteredSerial
    enrollment_secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class _Target:
    """Whom the enrollment is for and which device (``existing=None``: a new device)."""

    user_id: str
    existing: DeviceRecord | None
    serial: RegisteredSerial | None = None
    token: EnrollmentTokenRecord | None = None


class EnrollmentService:
    def __init__(
        self,
        storage: Storage,
        ca: CertificateAuthority,
        *,
        checkin_url: str,
        cert_lifetime: timedelta,
        current_notice_id: NoticeLookup,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if storage is None or ca is None or current_notice_id is None:
            raise ValueError("EnrollmentService needs storage, a CA and a notice lookup")
        self._storage = storage
        self._ca = ca
        self._checkin_url = checkin_url
        self._lifetime = cert_lifetime
        self._notice = current_notice_id
        self._clock = clock

    def required_notice(self, ownership: Ownership) -> str | None:
        """The privacy profile id an enrollment of ``ownership`` must name as accepted
        (``None`` for corporate: no notice is required)."""
        return self._notice(ownership) if ownership is Ownership.BYOD else None

    # --- admin side -----------------------------------------------------------------------

    def create_token(
        self,
        user_id: str,
        ownership: Ownership,
        platform: Platform | None,
        ttl: timedelta,
        created_by: str,
    ) -> str:
        """Create a single-use enrollment token for ``user_id``; returns the plaintext (shown
        once; only its SHA-256 is stored). ``ttl`` must be in (0, 90 days]."""
        if not _ID.fullmatch(user_id or "") or not created_by:
            raise BadRequest("user id must be 1-128 characters of [A-Za-z0-9._:@-]")
        if not timedelta(0) < ttl <= MAX_TOKEN_TTL:
            raise BadRequest(f"ttl must be positive and at most {MAX_TOKEN_TTL.days} days")
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = self._clock()
        record = EnrollmentTokenRecord(
            token_hash=hash_token(token),
            user_id=user_id,
            ownership=Ownership(ownership),
            platform=Platform(platform) if platform else None,
            created_by=created_by[:128],
            created_at=now,
            expires_at=now + ttl,
        )
        with self._storage.unit_of_work() as uow:
            _refuse_offboarded(uow, user_id)
            uow.enrollment_tokens.add_token(record)
            uow.audit.record(
                actor=created_by,
                action="enrollment.token_created",
                subject=user_id,
                outcome="ok",
                detail={
                    "ownership": record.ownership.value,
                    "platform": record.platform.value if record.platform else None,
                    "expires_at": record.expires_at.isoformat(),
                    "token_id": record.token_hash[:12],
                },
                at=now,
            )
        return token

    def register_serial(
        self, serial: str, platform: Platform, user_id: str | None, registered_by: str
    ) -> SerialRegistration:
        """Pre-register a serial for automated corporate enrollment and generate its
        enrollment secret (returned once; only its SHA-256 is stored). Re-registering updates
        platform and user, replaces the secret (the old one stops working: the way to
        recover a lost or leaked secret), and keeps the device already bound to it."""
        if not _SERIAL.fullmatch(serial or ""):
            raise BadRequest("serial must be 1-128 characters of [A-Za-z0-9._-]")
        if user_id is not None and not _ID.fullmatch(user_id):
            raise BadRequest("user id must be 1-128 characters of [A-Za-z0-9._:@-]")
        now = self._clock()
        secret = secrets.token_urlsafe(TOKEN_BYTES)
        registration = RegisteredSerial(
            serial_number=serial,
            platform=Platform(platform),
            user_id=user_id,
            registered_by=registered_by[:128],
            registered_at=now,
            secret_hash=hash_token(secret),
        )
        with self._storage.unit_of_work() as uow:
            if user_id is not None:
                _refuse_offboarded(uow, user_id)
            uow.serials.register(registration)
            uow.audit.record(
                actor=registered_by,
                action="enrollment.serial_registered",
                subject=serial,
                outcome="ok",
                detail={
                    "platform": registration.platform.value,
                    "user_id": user_id,
                    "secret_id": (registration.secret_hash or "")[:12],
                },
                at=now,
            )
            stored = uow.serials.get(serial)
        assert stored is not None
        return SerialRegistration(registration=stored, enrollment_secret=secret)

    def revoke_device(
        self, device_id: str, *, actor: str, reason: str, uow: UnitOfWork | None = None
    ) -> list[str]:
        """Revoke every certificate of ``device_id`` and retire it; returns the serials
        revoked. Raises :class:`mdm_core.domain.errors.NotFound` for an unknown device. Pass
        ``uow`` to make it part of the caller's transaction (offboarding's retire step)."""
        if uow is None:
            with self._storage.unit_of_work() as own:
                return self.revoke_device(device_id, actor=actor, reason=reason, uow=own)
        now = self._clock()
        device = uow.devices.get(device_id)
        if device is None:
            raise NotFound(f"unknown device {device_id}")
        revoked = uow.certificates.revoke_for_device(device_id, reason=reason, at=now)
        # Retiring revokes the device's access credentials in this same transaction.
        if device.status not in _GONE:
            change_status(
                uow,
                device_id,
                DeviceStatus.RETIRED,
                reason=f"revoked: {reason}",
                at=now,
                actor=actor,
            )
        else:
            end_device_access(uow, device_id, reason="device_revoked", at=now, actor=actor)
        uow.outbox.add(
            [
                DomainEvent(
                    type=EventType.CERTIFICATE_REVOKED,
                    subject=device_id,
                    payload={"serials": revoked, "reason": reason, "device_retired": True},
                )
            ]
        )
        uow.audit.record(
            actor=actor,
            action="device.revoke",
            subject=device_id,
            outcome="ok",
            detail={"serials": revoked, "reason": reason},
            at=now,
        )
        return revoked

    # --- device side ----------------------------------------------------------------------

    def enroll(self, request: EnrollmentRequest) -> EnrollmentResult:
        """Enroll (or re-enroll) a device; see the module docstring for the rules.

        Raises an :class:`mdm_core.domain.errors.EnrollmentError` leaf (or ``BadRequest``/
        ``Conflict``); a refused enrollment changes nothing (token unspent, nothing issued).
        """
        key = self._ca.check_csr(request.csr_pem)  # CPU work before any transaction
        self._check_notice(request)
        if request.serial_number is not None and not _SERIAL.fullmatch(request.serial_number):
            raise BadRequest("serial_number must be 1-128 characters of [A-Za-z0-9._-]")
        if request.device_id is not None and not _DEVICE_ID.fullmatch(request.device_id):
            raise BadRequest("device_id is not a device id")
        now = self._clock()
        try:
            with self._storage.unit_of_work() as uow:
                if request.token is not None:
                    target = self._token_target(uow, request, now)
                elif request.serial_number is not None:
                    target = self._serial_target(uow, request)
                else:
                    raise InvalidToken("an enrollment token or a registered serial is required")
                return self._issue(uow, request, target, key, now)
        except InvalidEnrollmentSecret as refused:
            self._audit_refusal(request, refused, now)  # after the rollback: nothing else
            raise

    def renew(
        self, device: AuthenticatedDevice, csr_pem: str, *, uow: UnitOfWork | None = None
    ) -> EnrollmentResult:
        """Issue a new certificate (on the CSR's key, new or the same) to an authenticated
        device and revoke the one it used. The status does not change: renewal is no way out
        of quarantine. Pass the ``uow`` the proof was verified in to make it one transaction.
        """
        key = self._ca.check_csr(csr_pem)
        if uow is None:
            with self._storage.unit_of_work() as own:
                return self.renew(device, csr_pem, uow=own)
        now = self._clock()
        current = device.device
        issued = self._ca.issue_device_certificate(
            csr_pem, current.id, current.user_id, self._lifetime, now=now
        )
        self._store_certificate(uow, current.id, current.user_id, issued)
        updated = uow.devices.set_identity(
            current.id,
            cert_serial=issued.serial,
            public_key=key.der,
            key_thumbprint=key.thumbprint,
            status=current.status,
            status_reason=current.status_reason,
            expected_generation=current.enrollment_generation,
            new_generation=current.enrollment_generation,
            at=now,
        )
        uow.certificates.revoke(device.cert_serial, reason="superseded", at=now)
        uow.outbox.add(
            [
                DomainEvent(
                    type=EventType.CERTIFICATE_REVOKED,
                    subject=current.id,
                    payload={"serials": [device.cert_serial], "reason": "superseded"},
                )
            ]
        )
        uow.audit.record(
            actor=f"device:{current.id}",
            action="device.renew",
            subject=current.id,
            outcome="ok",
            detail={"serial": issued.serial, "revoked": device.cert_serial},
            at=now,
        )
        return EnrollmentResult(
            device=updated,
            certificate_pem=issued.pem,
            ca_certificate_pem=self._ca.certificate_pem,
            checkin_url=self._checkin_url,
            re_enrolled=False,
            revoked_serial=device.cert_serial,
        )

    # --- rules ------------------------------------------------------------------------------

    def _check_notice(self, request: EnrollmentRequest) -> None:
        if request.ownership is not Ownership.BYOD:
            return
        required = self._notice(Ownership.BYOD)
        if required is None:
            raise NoticeNotAccepted("no BYOD privacy notice is configured; BYOD is closed")
        accepted = request.privacy_notice_accepted
        if accepted is None or accepted != required:
            raise NoticeNotAccepted(
                f"BYOD enrollment must accept the privacy notice of profile {required!r}"
            )

    def _token_target(self, uow: UnitOfWork, request: EnrollmentRequest, now: datetime) -> _Target:
        assert request.token is not None
        token = uow.enrollment_tokens.get_token(hash_token(request.token))
        if token is None:
            raise InvalidToken("unknown enrollment token")
        if token.used_at is not None:
            raise TokenUsed("the enrollment token was already used")
        if token.expires_at <= now:
            raise TokenExpired("the enrollment token has expired")
        if token.ownership is not request.ownership:
            raise OwnershipMismatch(f"the token is for {token.ownership.value} enrollment")
        if token.platform is not None and token.platform is not request.platform:
            raise PlatformMismatch(f"the token is for {token.platform.value} devices")
        existing: DeviceRecord | None = None
        if request.device_id is not None:
            existing = uow.devices.get(request.device_id)
            if existing is None or existing.user_id != token.user_id:
                raise DeviceMismatch("no such device of this token's user")
            if existing.status in _GONE:
                raise DeviceMismatch(f"device is {existing.status.value}; enroll a new one")
        elif request.serial_number is not None:
            existing = next(
                (
                    d
                    for d in reversed(uow.devices.list_for_user(token.user_id))
                    if d.serial_number == request.serial_number and d.status not in _GONE
                ),
                None,
            )
        if existing is not None:
            if existing.ownership is not request.ownership:
                raise OwnershipMismatch(f"device is enrolled as {existing.ownership.value}")
            if existing.platform is not request.platform:
                raise PlatformMismatch(f"device is enrolled as {existing.platform.value}")
        return _Target(user_id=token.user_id, existing=existing, token=token)

    def _serial_target(self, uow: UnitOfWork, request: EnrollmentRequest) -> _Target:
        assert request.serial_number is not None
        registration = uow.serials.get(request.serial_number)
        if registration is None:
            raise UnregisteredSerial("this serial is not registered for automated enrollment")
        if request.ownership is not Ownership.CORPORATE:
            raise OwnershipMismatch("a registered serial enrolls as corporate")
        if registration.platform is not request.platform:
            raise PlatformMismatch(f"the serial is registered as {registration.platform.value}")
        _check_secret(registration, request.enrollment_secret)
        existing = uow.devices.get(registration.device_id) if registration.device_id else None
        if existing is not None and existing.status in _GONE:
            existing = None  # a wiped/retired device comes back as a new device
        if request.device_id is not None and (existing is None or existing.id != request.device_id):
            raise DeviceMismatch("device_id does not match the device of this serial")
        if existing is None:
            user_id = registration.user_id or UNASSIGNED_USER
        else:
            user_id = existing.user_id
            if registration.user_id is not None and registration.user_id != user_id:
                # Handing a device to someone else is an admin act: revoke the old device
                # (revoke_device), then the serial enrolls as a new device of the new user.
                raise DeviceMismatch("the serial is registered to another user than its device")
        return _Target(user_id=user_id, existing=existing, serial=registration)

    # --- issuing ------------------------------------------------------------------------

    def _issue(
        self,
        uow: UnitOfWork,
        request: EnrollmentRequest,
        target: _Target,
        key: DevicePublicKey,
        now: datetime,
    ) -> EnrollmentResult:
        existing = target.existing
        if target.user_id != UNASSIGNED_USER:
            _refuse_offboarded(uow, target.user_id)  # before the token is spent
        device_id = existing.id if existing else str(uuid.uuid4())
        if target.token is not None:
            redeemed = uow.enrollment_tokens.redeem_token(
                target.token.token_hash, device_id=device_id, at=now
            )
            if redeemed is None:  # a concurrent enrollment redeemed it first
                raise TokenUsed("the enrollment token was already used")
        issued = self._ca.issue_device_certificate(
            request.csr_pem, device_id, target.user_id, self._lifetime, now=now
        )
        revoked: str | None = None
        if existing is None:
            device = DeviceRecord(
                id=device_id,
                user_id=target.user_id,
                platform=request.platform,
                ownership=request.ownership,
                status=DeviceStatus.ACTIVE,
                serial_number=request.serial_number,
                cert_serial=issued.serial,
                key_thumbprint=key.thumbprint,
                enrollment_generation=1,
                enrolled_at=now,
                last_checkin_at=None,
            )
            uow.devices.create(device, public_key=key.der)
            self._store_certificate(uow, device_id, target.user_id, issued)
            event_type = EventType.DEVICE_ENROLLED
        else:
            status, reason = existing.status, existing.status_reason
            # Only a fresh user-bound token (issued by an admin or the directory) leads out of
            # quarantine; a serial and its secret live on the device and prove nothing new.
            if status is DeviceStatus.QUARANTINED and target.token is not None:
                status, reason = DeviceStatus.PENDING_VERIFICATION, "re-enrolled after quarantine"
            # Revoke everything the device held (certificates and the access credentials
            # obtained with the old key), then record the new certificate.
            uow.certificates.revoke_for_device(device_id, reason="re-enrolled", at=now)
            end_device_access(uow, device_id, reason="re_enrolled", at=now)
            self._store_certificate(uow, device_id, target.user_id, issued)
            device = uow.devices.set_identity(
                device_id,
                cert_serial=issued.serial,
                public_key=key.der,
                key_thumbprint=key.thumbprint,
                status=status,
                status_reason=reason,
                expected_generation=existing.enrollment_generation,
                new_generation=existing.enrollment_generation + 1,
                at=now,
            )
            revoked = existing.cert_serial
            event_type = EventType.DEVICE_RE_ENROLLED
        if target.serial is not None and target.serial.device_id != device_id:
            if not uow.serials.bind_device(
                target.serial.serial_number, device_id=device_id, expected=target.serial.device_id
            ):
                raise Conflict("the serial was enrolled concurrently; retry")
        payload: dict[str, Any] = {
            "user_id": device.user_id,
            "platform": device.platform.value,
            "ownership": device.ownership.value,
            "status": device.status.value,
            "cert_serial": issued.serial,
            "generation": device.enrollment_generation,
            "via": "token" if target.token is not None else "serial",
        }
        if revoked is not None:
            payload["revoked_serial"] = revoked
        uow.outbox.add([DomainEvent(type=event_type, subject=device_id, payload=payload)])
        uow.audit.record(
            actor=f"device:{device_id}",
            action="device.re_enroll" if existing else "device.enroll",
            subject=device_id,
            outcome="ok",
            detail=payload,
            at=now,
        )
        return EnrollmentResult(
            device=device,
            certificate_pem=issued.pem,
            ca_certificate_pem=self._ca.certificate_pem,
            checkin_url=self._checkin_url,
            re_enrolled=existing is not None,
            revoked_serial=revoked,
        )

    def _audit_refusal(
        self, request: EnrollmentRequest, refused: InvalidEnrollmentSecret, now: datetime
    ) -> None:
        with self._storage.unit_of_work() as uow:
            uow.audit.record(
                actor=f"source:{(request.source or 'unknown')[:100]}",
                action="enrollment.refused",
                subject=request.serial_number or "-",
                outcome="refused",
                detail={
                    "reason": refused.reason,
                    "message": refused.message,
                    "platform": request.platform.value,
                    "device_id": request.device_id,
                },
                at=now,
            )

    @staticmethod
    def _store_certificate(
        uow: UnitOfWork, device_id: str, user_id: str, issued: IssuedCertificate
    ) -> None:
        uow.certificates.add(
            CertificateRecord(
                serial=issued.serial,
                device_id=device_id,
                user_id=user_id,
                key_thumbprint=issued.public_key.thumbprint,
                not_before=issued.not_before,
                not_after=issued.not_after,
                pem=issued.pem,
            )
        )
