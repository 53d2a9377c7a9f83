"""Device proofs: JWTs signed by a device's enrolled key (in the style of DPoP, RFC 9449).

Two token kinds, one verify function each (https://www.rfc-editor.org/rfc/rfc9449):

**Request proof** (every MDM request, in the ``Device-Proof`` HTTP header)::

    header  {"alg": "ES256", "typ": "device-proof+jwt", "kid": "<device id>"}
    claims  {"htm": "POST",                         HTTP method, upper case
             "htu": "https://mdm.example/mdm/v1/checkin",   scheme://host[:port]/path
             "iat": 1732350000,                     integer seconds
             "jti": "<>= 16 random bytes, base64url>",
             "bh":  "<base64url(SHA-256(exact body bytes)), no padding>"}

**Login proof** (handed by the local agent to the gateway's login page)::

    header  {"alg": "ES256", "typ": "device-login+jwt", "kid": "<device id>"}
    claims  {"aud": "<the gateway's audience>", "nonce": "<the login's nonce>",
             "iat": ..., "jti": ..., "posture": {...optional fresh snapshot...}}

What is refused, each with its own reason (:mod:`mdm_core.domain.errors`): not a JWT, any ``alg``
but ES256 (``none``, HS256, ... — the algorithm is never taken from the header), a wrong
``typ``, unknown ``kid``, a bad signature, ``iat`` older than ``max_age`` or further in the
future than ``leeway``, method/URL/audience/nonce mismatch, body hash mismatch, a replayed
``jti``, a revoked or expired certificate, a retired or wiped device. Quarantined and
pending-verification devices **are** authenticated (they must check in to recover); callers
read ``AuthenticatedDevice.device.status`` and decide.

Every refusal is counted in ``posture_device_proof_refusals_total{kind,reason}`` and audited
(plus a ``device.proof_refused`` event when the device is known) in its own transaction after
the caller's unit of work ends, so the refusal is recorded even though the caller rolls back.

The hot path is one query (device + current certificate), a cached public-key object, one
ES256 verification and one replay insert in the caller's unit of work. A login proof may take
its device identity from a version-checked read model instead of the query (``identities``),
and, when its nonce lives on the Redis server of the replay store (:class:`RedisSpendable`),
its nonce is spent and its ``jti`` remembered in ONE round trip, still only once the signature
and the claims hold.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Literal, Protocol, cast, runtime_checkable
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from prometheus_client import Counter

from mdm_core.bus.events import DomainEvent, EventType
from mdm_core.domain.errors import (
    BadSignature,
    BodyMismatch,
    DeviceNotActive,
    ExpiredCertificate,
    ExpiredProof,
    MalformedProof,
    NonceMismatch,
    ProofError,
    ReplayedProof,
    RevokedCertificate,
    UnknownDevice,
    UnsupportedAlgorithm,
    WrongProofType,
    WrongTarget,
)
from mdm_core.domain.model import DeviceRecord, DeviceStatus
from mdm_core.storage.identity import DeviceIdentity
from mdm_core.storage.replay import ReplayStore
from mdm_core.storage.uow import Storage, UnitOfWork
from mdm_core.support.json_input import loads_bounded

__all__ = [
    "ALGORITHM",
    "LOGIN_PROOF_TYP",
    "PROOF_HEADER",
    "REQUEST_PROOF_TYP",
    "AuthenticatedDevice",
    "DeviceProofVerifier",
    "IdentitySource",
    "JointReplayStore",
    "RedisSpendable",
    "VerifiedLoginProof",
    "body_hash",
    "normalise_htu",
    "proof_kid",
]

log = logging.getLogger(__name__)

ALGORITHM = "ES256"
REQUEST_PROOF_TYP = "device-proof+jwt"
LOGIN_PROOF_TYP = "device-login+jwt"
#: The HTTP header that carries a request proof.
PROOF_HEADER = "Device-Proof"
MAX_REQUEST_PROOF_BYTES = 4 * 1024
MAX_LOGIN_PROOF_BYTES = 64 * 1024  # room for a posture snapshot
_JTI = re.compile(r"[A-Za-z0-9_-]{22,128}")  # >= 16 random bytes, base64url
_KID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_INACTIVE = frozenset({DeviceStatus.RETIRED, DeviceStatus.WIPED})
_DEFAULT_PORTS = {"http": 80, "https": 443}

Kind = Literal["request", "login"]

REFUSALS = Counter(
    "posture_device_proof_refusals",
    "Device proofs refused, by token kind and reason.",
    ["kind", "reason"],
)
VERIFIED = Counter("posture_device_proofs_verified", "Device proofs accepted.", ["kind"])


def _utcnow() -> datetime:
    return datetime.now(UTC)


#: Where a login proof's device identity comes from instead of the SQL lookup (the read
#: model: version-checked, so a revocation or a wipe is seen by the next proof).
IdentitySource = Callable[[str], DeviceIdentity | None]


@runtime_checkable
class RedisSpendable(Protocol):
    """A login proof's nonce spend (``__call__``) whose nonce is one Redis key, so the
    verifier can delete it in the replay record's round trip."""

    def __call__(self, nonce: str) -> bool: ...

    def redis_key(self, nonce: str) -> str | None:
        """The key to delete to spend ``nonce`` (``None``: spend it by calling)."""
        ...


@runtime_checkable
class JointReplayStore(Protocol):
    """A replay store on the Redis server that also holds the nonces."""

    def remember_spending(
        self, jti: str, expires_at: datetime, single_use_key: str
    ) -> tuple[bool, bool]:
        """Delete ``single_use_key`` and remember ``jti`` in one round trip: (deleted, new)."""
        ...


def body_hash(body: bytes) -> str:
    """The ``bh`` claim for ``body``: base64url (no padding) of its SHA-256."""
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode("ascii")


def _utf8(text: str) -> bytes:
    """``text`` as bytes for a constant-time comparison (lone surrogates kept, never raised)."""
    return text.encode("utf-8", "surrogatepass")


def normalise_htu(url: str) -> str:
    """``scheme://host[:port]/path`` for comparison: scheme and host lower-cased, default
    port dropped, query and fragment dropped (RFC 9449 section 4.3). ``ValueError`` if
    ``url`` is not an absolute http(s) URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError("not an absolute http(s) URL")
    port = parts.port  # raises ValueError for a bad port
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path or '/'}"


def _unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header, parsed only to route the proof (kid, typ, alg); nothing in it is
    trusted. Cheaper than ``jwt.get_unverified_header`` (which validates every character
    of all three segments, as ``jwt.decode`` does again right after)."""
    segment, sep, rest = token.partition(".")
    if not sep or rest.count(".") != 1 or len(segment) > 1024:
        raise MalformedProof("not a JWT")
    try:
        header = loads_bounded(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error) as exc:  # JsonInputError is a ValueError
        raise MalformedProof("not a JWT") from exc
    if not isinstance(header, dict):
        raise MalformedProof("not a JWT")
    return header


def proof_kid(token: object) -> str | None:
    """The device id a login proof names (its unverified ``kid``), or ``None`` when it names
    none readable. For routing reads only (the version of that device): nothing is trusted."""
    if not isinstance(token, str) or not token or len(token) > MAX_LOGIN_PROOF_BYTES:
        return None
    try:
        kid = _unverified_header(token).get("kid")
    except MalformedProof:
        return None
    return kid if isinstance(kid, str) and _KID.fullmatch(kid) else None


@dataclass(frozen=True, slots=True)
class AuthenticatedDevice:
    """A device whose proof verified. ``device.status`` may be quarantined or
    pending_verification: authentication is not authorisation. ``cert_not_after`` lets the
    check-in tell the device to renew (``POST /mdm/v1/renew``) ahead of expiry."""

    device: DeviceRecord
    cert_serial: str
    key_thumbprint: str
    cert_not_after: datetime | None = None


@dataclass(frozen=True, slots=True)
class VerifiedLoginProof:
    """A verified login proof: the device, its optional signed posture snapshot (unvalidated
    JSON object: parse it with the posture model), and when the device signed it."""

    device: AuthenticatedDevice
    posture: dict[str, Any] | None
    issued_at: datetime


class _AfterOnly:
    """What :meth:`DeviceProofVerifier._run` needs of a unit of work when the proof touches
    no SQL: ``call_after`` (the refusal record), run by :meth:`run` once it is over."""

    __slots__ = ("_after",)

    def __init__(self) -> None:
        self._after: list[Callable[[], object]] = []

    def call_after(self, callback: Callable[[], object]) -> None:
        self._after.append(callback)

    def run(self) -> None:
        for callback in self._after:
            try:
                callback()
            except Exception:  # a refusal that cannot be recorded does not change the answer
                log.exception("recording a proof refusal failed")


class _KeyCache:
    """Parsed public keys keyed by (device id, key thumbprint), bounded, thread-safe.

    The thumbprint names the key, so a re-enrolled device (new key) misses and reloads.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._keys: dict[tuple[str, str], ec.EllipticCurvePublicKey] = {}
        self._lock = threading.Lock()

    def get(self, device_id: str, thumbprint: str, der: bytes) -> ec.EllipticCurvePublicKey:
        cache_key = (device_id, thumbprint)
        key = self._keys.get(cache_key)
        if key is not None:
            return key
        loaded = load_der_public_key(der)
        if not isinstance(loaded, ec.EllipticCurvePublicKey):
            raise UnknownDevice("device key is not an EC key")
        with self._lock:
            while len(self._keys) >= self._size:
                self._keys.pop(next(iter(self._keys)))  # oldest inserted first
            self._keys[cache_key] = loaded
        return loaded


class DeviceProofVerifier:
    """Verifies request and login proofs against the enrolled device keys.

    ``replay`` is a shared replay store (Redis) for login proofs; ``None`` uses the SQL store
    of the unit of work the proof is verified in. Request proofs are always remembered in SQL,
    in the unit of work they are verified in (the caller's: a check-in stays one transaction),
    by the same statement that reads the device: a Redis store would cost a round trip of its
    own on every device request.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        max_age: timedelta,
        leeway: timedelta,
        replay: ReplayStore | None = None,
        clock: Callable[[], datetime] = _utcnow,
        key_cache_size: int = 10_000,
        purge_interval: timedelta = timedelta(minutes=1),
    ) -> None:
        if storage is None:
            raise ValueError("DeviceProofVerifier needs a storage")
        if max_age <= timedelta(0) or leeway < timedelta(0):
            raise ValueError("max_age must be positive and leeway not negative")
        self._storage = storage
        self._max_age = max_age.total_seconds()
        self._leeway = leeway.total_seconds()
        self._replay = replay
        self._joint_replay = callable(getattr(replay, "remember_spending", None))
        self._clock = clock
        self._keys = _KeyCache(key_cache_size)
        self._purge_interval = purge_interval
        self._next_purge = clock() + purge_interval
        self._purge_lock = threading.Lock()

    # --- public API -----------------------------------------------------------------------

    def verify(
        self, token: str, *, method: str, url: str, body: bytes, uow: UnitOfWork | None = None
    ) -> AuthenticatedDevice:
        """Verify a request proof for ``method`` ``url`` with exactly ``body``.

        ``url`` is the URL the device was told to use (public URL + path); its query is
        ignored. With ``uow`` the replay record is written in the caller's transaction (and
        only counts if it commits); without, in a transaction of its own. Raises a
        :class:`mdm_core.domain.errors.ProofError` leaf.
        """
        try:
            expected_htu = normalise_htu(url)
        except ValueError as exc:
            raise ValueError(f"verify() needs an absolute request URL, got {url!r}") from exc
        check = partial(self._check_request_claims, method=method.upper(), htu=expected_htu)
        device, _claims = self._run("request", token, uow, check, body=body)
        return device

    def verify_login_proof(
        self,
        token: str,
        *,
        audience: str,
        nonce: str | Callable[[str], bool],
        uow: UnitOfWork | None = None,
        identities: IdentitySource | None = None,
    ) -> VerifiedLoginProof:
        """Verify a login proof for ``audience`` bound to ``nonce``.

        A ``str`` nonce is compared in constant time but **not consumed**: the caller issued
        it and must make it single-use (delete it atomically from its nonce store before or
        after this call). A callable is the caller's nonce store instead: once the signature
        holds, it is called with the proof's own nonce claim and must spend it (``True``) or
        refuse it (``False``: :class:`NonceMismatch`); the token is parsed once either way.
        The proof's ``jti`` is remembered like a request proof's. When the callable is a
        :class:`RedisSpendable` and the replay store a :class:`JointReplayStore`, the spend
        and the replay record share one round trip (after the signature and the claims hold,
        as above; a refused nonce is a :class:`NonceMismatch` before any state check).
        ``identities`` replaces the SQL lookup of the device (the read model).
        """
        if not audience or not nonce:
            raise ValueError("audience and nonce are required")
        # Duck-typed (a runtime_checkable isinstance costs more than the round trip it saves).
        joint = (
            cast(RedisSpendable, nonce)
            if self._joint_replay and callable(getattr(nonce, "redis_key", None))
            else None
        )
        check = partial(self._check_login_claims, nonce=None if joint is not None else nonce)
        device, claims = self._run(
            "login", token, uow, check, audience=audience, identities=identities, joint=joint
        )
        posture = claims.get("posture")
        return VerifiedLoginProof(
            device=device,
            posture=posture if isinstance(posture, dict) else None,
            issued_at=datetime.fromtimestamp(claims["iat"], UTC),
        )

    # --- the pipeline ---------------------------------------------------------------------

    def _run(
        self,
        kind: Kind,
        token: str,
        uow: UnitOfWork | None,
        check: Callable[..., None],
        *,
        body: bytes = b"",
        audience: str | None = None,
        identities: IdentitySource | None = None,
        joint: RedisSpendable | None = None,
    ) -> tuple[AuthenticatedDevice, dict[str, Any]]:
        if uow is None and identities is not None and self._replay is not None:
            # Nothing to read or write in SQL (identity from the read model, replay on Redis):
            # no unit of work; a refusal is still recorded once the verification is over.
            after = _AfterOnly()
            try:
                return self._run(
                    kind,
                    token,
                    cast(UnitOfWork, after),
                    check,
                    body=body,
                    audience=audience,
                    identities=identities,
                    joint=joint,
                )
            finally:
                after.run()
        if uow is None:
            with self._storage.unit_of_work() as own:
                return self._run(
                    kind,
                    token,
                    own,
                    check,
                    body=body,
                    audience=audience,
                    identities=identities,
                    joint=joint,
                )
        kid: str | None = None
        known = False
        remembered: tuple[str, datetime, bool] | None = None
        try:
            header = self._header(kind, token)
            kid = header["kid"]
            replay = self._replay_record(kind, kid, token)
            if replay is None:
                identity = identities(kid) if identities else uow.identities.lookup(kid)
            else:  # one round trip: the jti is written now, checked after the signature
                identity, fresh = uow.identities.lookup_and_remember(kid, *replay)
                remembered = (*replay, fresh)
            if identity is None:
                raise UnknownDevice("no device with this kid")
            known = True
            result = self._verify_known(
                kind, token, identity, uow, check, body, audience, remembered, joint
            )
        except ProofError as err:
            REFUSALS.labels(kind=kind, reason=err.reason).inc()
            uow.call_after(partial(self._record_refusal, kind, kid, known, err))
            raise
        VERIFIED.labels(kind=kind).inc()
        self._maybe_schedule_purge(uow)
        return result

    def _replay_store(self, kind: Kind, uow: UnitOfWork) -> ReplayStore:
        """Where a proof of ``kind`` is remembered: request proofs in SQL (``uow``), login
        proofs in the shared store when there is one."""
        if kind == "request" or self._replay is None:
            return uow.replay
        return self._replay

    def _replay_record(self, kind: Kind, kid: str, token: str) -> tuple[str, datetime] | None:
        """The replay key and expiry :meth:`_verify_known` will remember, read from the
        unverified claims so the SQL store can write them with the device lookup. Only for
        request proofs (always remembered in SQL; their callers roll the unit of work back on
        any refusal, so a refused proof's jti is never kept); ``None`` when the claims do not
        parse (the normal path then refuses them)."""
        if kind != "request":
            return None
        segment = token.split(".")[1]
        try:
            # Not yet verified: the bounded parser (a deeply nested payload is refused, not a
            # RecursionError).
            claims = loads_bounded(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
        except (ValueError, binascii.Error):
            return None
        if not isinstance(claims, dict):
            return None
        jti, iat = claims.get("jti"), claims.get("iat")
        if not isinstance(jti, str) or not isinstance(iat, int) or isinstance(iat, bool):
            return None
        key = hashlib.sha256(f"{kind}|{kid}|{jti}".encode()).hexdigest()
        try:
            expires = datetime.fromtimestamp(iat + self._max_age + self._leeway, UTC)
        except (OverflowError, OSError, ValueError):
            return None
        return key, expires

    def _header(self, kind: Kind, token: str) -> dict[str, Any]:
        limit = MAX_REQUEST_PROOF_BYTES if kind == "request" else MAX_LOGIN_PROOF_BYTES
        if not isinstance(token, str) or not token or len(token) > limit:
            raise MalformedProof("missing or oversized proof")
        header = _unverified_header(token)
        if header.get("alg") != ALGORITHM:
            raise UnsupportedAlgorithm(f"only {ALGORITHM} proofs are accepted")
        expected_typ = REQUEST_PROOF_TYP if kind == "request" else LOGIN_PROOF_TYP
        if header.get("typ") != expected_typ:
            raise WrongProofType(f"typ must be {expected_typ}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not _KID.fullmatch(kid):
            raise MalformedProof("kid must name a device id")
        return header

    def _verify_known(
        self,
        kind: Kind,
        token: str,
        identity: DeviceIdentity,
        uow: UnitOfWork,
        check: Callable[..., None],
        body: bytes,
        audience: str | None,
        remembered: tuple[str, datetime, bool] | None = None,
        joint: RedisSpendable | None = None,
    ) -> tuple[AuthenticatedDevice, dict[str, Any]]:
        device = identity.device
        if identity.public_key is None or not device.key_thumbprint or not device.cert_serial:
            raise UnknownDevice("device has no enrolled key")
        key = self._keys.get(device.id, device.key_thumbprint, identity.public_key)
        claims = (
            self._decode_request_proof(token, key)
            if kind == "request"
            else self._decode_login_proof(token, key, audience or "")
        )
        now = self._clock().timestamp()
        iat = self._check_time(claims, now)
        check(claims, body=body)
        jti = claims["jti"]
        replay_key = hashlib.sha256(f"{kind}|{device.id}|{jti}".encode()).hexdigest()
        # Remember the jti until the proof would be refused as too old anyway.
        expires = datetime.fromtimestamp(iat + self._max_age + self._leeway, UTC)
        if joint is not None:  # the signature and the claims hold: spend the nonce now
            remembered = self._spend_jointly(joint, claims["nonce"], replay_key, expires)
        # State checks come after the signature, so nobody without the key learns the state.
        if identity.cert_not_after is None or identity.cert_revoked_at is not None:
            raise RevokedCertificate("the device certificate is revoked")
        if identity.cert_not_after.timestamp() < now:
            raise ExpiredCertificate("the device certificate has expired; renew or re-enroll")
        if device.status in _INACTIVE:
            raise DeviceNotActive(f"device is {device.status.value}")
        if remembered is not None and remembered[:2] == (replay_key, expires):
            fresh = remembered[2]  # written with the lookup, from these same claims
        else:
            fresh = self._replay_store(kind, uow).remember(replay_key, expires)
        if not fresh:
            raise ReplayedProof("this proof was already used")
        authenticated = AuthenticatedDevice(
            device=device,
            cert_serial=device.cert_serial,
            key_thumbprint=device.key_thumbprint,
            cert_not_after=identity.cert_not_after,
        )
        return authenticated, claims

    def _spend_jointly(
        self, joint: RedisSpendable, claimed: str, replay_key: str, expires: datetime
    ) -> tuple[str, datetime, bool]:
        """Spend the proof's nonce and remember its jti in one round trip; raises
        :class:`NonceMismatch` when the nonce was not live (the jti is remembered anyway: a
        refused proof stays refused)."""
        replay = cast(JointReplayStore, self._replay)  # checked by verify_login_proof
        key = joint.redis_key(claimed)
        if key is None:  # not a key of the replay store's server: spend it by calling
            if not joint(claimed):
                raise NonceMismatch("the proof is not bound to a live nonce from this gateway")
            assert self._replay is not None
            return replay_key, expires, self._replay.remember(replay_key, expires)
        spent, fresh = replay.remember_spending(replay_key, expires, key)
        if not spent:
            raise NonceMismatch("the proof is not bound to a live nonce from this gateway")
        return replay_key, expires, fresh

    # --- one decode function per token kind, every option spelled out ---------------------

    @staticmethod
    def _decode_request_proof(token: str, key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                # Never taken from the header: a device key makes ES256 signatures, nothing
                # else. This is what defeats alg=none and HS256-with-the-public-key.
                algorithms=[ALGORITHM],
                options={
                    "verify_signature": True,
                    "require": ["htm", "htu", "iat", "jti", "bh"],
                    # Proofs carry no exp/nbf: freshness is iat + max_age, checked by
                    # _check_time against our (injectable) clock.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,  # _check_time: max age and future leeway
                    "verify_aud": False,  # a request proof names its target with htm/htu
                    "verify_iss": False,  # the signer is the device named by kid
                    "verify_sub": False,  # no sub in request proofs
                    "verify_jti": True,  # must be a string; format checked in _check_time
                    "strict_aud": False,  # no aud
                },
            )
        except jwt.InvalidSignatureError as exc:
            raise BadSignature("signature does not verify with the device key") from exc
        except jwt.InvalidAlgorithmError as exc:
            raise UnsupportedAlgorithm(f"only {ALGORITHM} proofs are accepted") from exc
        except jwt.InvalidTokenError as exc:
            raise MalformedProof(f"invalid request proof: {type(exc).__name__}") from exc

    @staticmethod
    def _decode_login_proof(
        token: str, key: ec.EllipticCurvePublicKey, audience: str
    ) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],  # never from the header (see _decode_request_proof)
                audience=audience,
                options={
                    "verify_signature": True,
                    "require": ["aud", "nonce", "iat", "jti"],
                    "verify_exp": False,  # freshness is iat + max_age (_check_time)
                    "verify_nbf": False,
                    "verify_iat": False,  # _check_time
                    "verify_aud": True,
                    "strict_aud": True,  # aud must be exactly our audience string, no list
                    "verify_iss": False,  # the signer is the device named by kid
                    "verify_sub": False,
                    "verify_jti": True,
                },
            )
        except jwt.InvalidSignatureError as exc:
            raise BadSignature("signature does not verify with the device key") from exc
        except jwt.InvalidAlgorithmError as exc:
            raise UnsupportedAlgorithm(f"only {ALGORITHM} proofs are accepted") from exc
        except jwt.InvalidAudienceError as exc:
            raise WrongTarget("the proof is for another audience") from exc
        except jwt.InvalidTokenError as exc:
            raise MalformedProof(f"invalid login proof: {type(exc).__name__}") from exc

    # --- claim checks -----------------------------------------------------------------------

    def _check_time(self, claims: dict[str, Any], now: float) -> int:
        iat = claims.get("iat")
        if not isinstance(iat, int) or isinstance(iat, bool):
            raise MalformedProof("iat must be an integer")
        if iat > now + self._leeway:
            raise ExpiredProof("iat is in the future")
        if iat < now - self._max_age - self._leeway:
            raise ExpiredProof("the proof is too old")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not _JTI.fullmatch(jti):
            raise MalformedProof("jti must be >= 16 random bytes, base64url")
        return iat

    @staticmethod
    def _check_request_claims(
        claims: dict[str, Any], *, method: str, htu: str, body: bytes
    ) -> None:
        htm = claims.get("htm")
        if not isinstance(htm, str) or htm != method:
            raise WrongTarget("htm does not match the request method")
        claimed = claims.get("htu")
        try:
            claimed_htu = normalise_htu(claimed) if isinstance(claimed, str) else None
        except ValueError:
            claimed_htu = None
        # Compared as UTF-8 bytes: compare_digest refuses non-ASCII str (a path can hold any
        # character, and a TypeError here would be a 500 instead of a refusal).
        if claimed_htu is None or not hmac.compare_digest(_utf8(claimed_htu), _utf8(htu)):
            raise WrongTarget("htu does not match the request URL")
        bh = claims.get("bh")
        if not isinstance(bh, str) or not hmac.compare_digest(_utf8(bh), _utf8(body_hash(body))):
            raise BodyMismatch("bh does not match the request body")

    @staticmethod
    def _check_login_claims(
        claims: dict[str, Any], *, nonce: str | Callable[[str], bool] | None, body: bytes
    ) -> None:
        claimed = claims.get("nonce")
        if not isinstance(claimed, str):
            raise NonceMismatch("the proof is bound to another nonce")
        if nonce is None:
            pass  # spent with the replay record (_spend_jointly), right after these checks
        elif callable(nonce):
            if not nonce(claimed):  # spent now: a replay of this proof finds it gone
                raise NonceMismatch("the proof is not bound to a live nonce from this gateway")
        elif not hmac.compare_digest(claimed.encode(), nonce.encode()):
            raise NonceMismatch("the proof is bound to another nonce")
        posture = claims.get("posture")
        if posture is not None and not isinstance(posture, dict):
            raise MalformedProof("posture must be a JSON object")

    # --- after the unit of work ---------------------------------------------------------------

    def _record_refusal(self, kind: Kind, kid: str | None, known: bool, err: ProofError) -> None:
        subject = kid or "unknown"
        with self._storage.unit_of_work() as uow:
            uow.audit.record(
                actor=f"device:{subject}",
                action=f"device_proof.{kind}",
                subject=subject,
                outcome="refused",
                detail={"reason": err.reason, "message": err.message},
                at=self._clock(),
            )
            if known and kid:
                uow.outbox.add(
                    [
                        DomainEvent(
                            type=EventType.PROOF_REFUSED,
                            subject=kid,
                            payload={"kind": kind, "reason": err.reason},
                        )
                    ]
                )

    def _maybe_schedule_purge(self, uow: UnitOfWork) -> None:
        if self._clock() < self._next_purge:  # request proofs are in SQL even with Redis
            return
        if not self._purge_lock.acquire(blocking=False):
            return
        try:
            if self._clock() < self._next_purge:
                return
            self._next_purge = self._clock() + self._purge_interval
        finally:
            self._purge_lock.release()
        uow.call_after(self.purge_expired)

    def purge_expired(self) -> int:
        """Forget remembered jtis past their expiry (runs about once per purge interval)."""
        with self._storage.unit_of_work() as uow:
            # Request proofs (and login proofs without a shared store) are in SQL.
            purged = uow.replay.purge_expired(self._clock())
        return purged + (0 if self._replay is None else self._replay.purge_expired(self._clock()))
