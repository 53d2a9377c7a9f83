"""The posture cache: a device's latest posture and compliance state, kept close to decisions.

Owns the :class:`PostureCache` protocol, the cached value :class:`CachedPosture` (with its JSON
encoding, shared by every backend) and :class:`InProcessPostureCache`, the bounded TTL cache of
the embedded default. The Redis implementation shared by several processes is
:class:`mdm_core.redis_backends.posture_cache.RedisPostureCache`; both pass
``tests/contracts/test_posture_cache.py``.

Fail closed is the caller's job. The cache is only ever a shortcut to the posture store:

- a miss (``None``) means "read the store";
- a cache error (:class:`mdm_core.domain.infra_errors.InfraError`, including
  :class:`~mdm_core.domain.infra_errors.InfraCorrupt` for an undecodable value) must be treated
  exactly like a miss: read the store, and if that fails too, block. A cache error is never
  "compliant", and never a reason to reuse an older value;
- the freshness rule (``max_posture_age``) is judged on ``collected_at`` by the policy engine,
  not by the TTL: the TTL only bounds how long a stale entry can survive a lost invalidation.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from mdm_core.domain.infra_errors import InfraCorrupt

__all__ = [
    "COMPLIANCE_STATES",
    "CachedPosture",
    "InProcessPostureCache",
    "PostureCache",
    "require_device_id",
    "ttl_milliseconds",
]

# The states of ``compliance_state.state`` (mdm_core/storage/sql/tables.py).
COMPLIANCE_STATES = frozenset({"compliant", "noncompliant", "quarantined", "unknown"})
_FORMAT = 1


@dataclass(frozen=True, slots=True)
class CachedPosture:
    """What the cache holds for one device.

    ``posture`` is the posture document as JSON bytes (UTF-8), kept byte for byte;
    ``collected_at`` is when the device measured it, ``received_at`` when we stored it (both
    timezone-aware); ``compliance`` is one of :data:`COMPLIANCE_STATES`. Construction
    validates all of it and raises ``ValueError``.
    """

    posture: bytes
    collected_at: datetime
    received_at: datetime
    compliance: str

    def __post_init__(self) -> None:
        if not isinstance(self.posture, bytes):
            raise ValueError("posture must be JSON bytes")
        try:
            self.posture.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError("posture must be UTF-8 JSON") from exc
        for name in ("collected_at", "received_at"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.utcoffset() is None:
                raise ValueError(f"{name} must be a timezone-aware datetime")
        if self.compliance not in COMPLIANCE_STATES:
            raise ValueError(f"compliance must be one of {sorted(COMPLIANCE_STATES)}")

    def to_json(self) -> bytes:
        """The value as stored by shared backends: one JSON document, UTF-8."""
        doc = {
            "v": _FORMAT,
            "posture": self.posture.decode("utf-8"),
            "collected_at": self.collected_at.isoformat(),
            "received_at": self.received_at.isoformat(),
            "compliance": self.compliance,
        }
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> CachedPosture:
        """Decode :meth:`to_json` output; anything else raises ``InfraCorrupt``."""
        try:
            doc: Any = json.loads(data)
            if not isinstance(doc, dict) or doc.get("v") != _FORMAT:
                raise ValueError("unknown format")
            fields = ("posture", "collected_at", "received_at", "compliance")
            if not all(isinstance(doc.get(f), str) for f in fields):
                raise ValueError("missing or mistyped field")
            return cls(
                posture=doc["posture"].encode("utf-8"),
                collected_at=datetime.fromisoformat(doc["collected_at"]),
                received_at=datetime.fromisoformat(doc["received_at"]),
                compliance=doc["compliance"],
            )
        except (ValueError, TypeError, UnicodeError) as exc:
            raise InfraCorrupt("posture-cache", "decode", str(exc)) from exc


def ttl_milliseconds(ttl: timedelta) -> int:
    """``ttl`` in whole milliseconds; raises ``ValueError`` below one millisecond."""
    ms = int(ttl / timedelta(milliseconds=1))
    if ms < 1:
        raise ValueError("ttl must be at least one millisecond")
    return ms


def require_device_id(device_id: str) -> None:
    """Raise ``ValueError`` unless ``device_id`` is a non-empty string."""
    if not isinstance(device_id, str) or not device_id:
        raise ValueError("device_id must be a non-empty string")


class PostureCache(Protocol):
    """Latest posture per device, with a time to live. See the module docstring on errors."""

    def get(self, device_id: str) -> CachedPosture | None:
        """The cached value, or ``None`` if unknown, expired or invalidated.

        Raises ``InfraError`` when the backend fails or holds an undecodable value: the
        caller treats that as a miss and reads the store.
        """
        ...

    def put(self, device_id: str, value: CachedPosture, ttl: timedelta) -> None:
        """Store ``value`` for ``ttl`` (at least 1 ms, else ``ValueError``), replacing any
        earlier value. Raises ``InfraError`` when the backend fails."""
        ...

    def invalidate(self, device_id: str) -> None:
        """Forget the device's value; unknown ids are fine. Raises ``InfraError`` on failure."""
        ...


class InProcessPostureCache:
    """A bounded TTL cache in this process: least recently used entries go first.

    ``max_entries`` bounds memory; ``clock`` returns monotonic seconds (tests inject one).
    """

    def __init__(
        self, *, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, CachedPosture]] = OrderedDict()

    def get(self, device_id: str) -> CachedPosture | None:
        require_device_id(device_id)
        now = self._clock()
        with self._lock:
            found = self._entries.get(device_id)
            if found is None:
                return None
            expires_at, value = found
            if now >= expires_at:
                del self._entries[device_id]
                return None
            self._entries.move_to_end(device_id)
            return value

    def put(self, device_id: str, value: CachedPosture, ttl: timedelta) -> None:
        require_device_id(device_id)
        if not isinstance(value, CachedPosture):
            raise ValueError("value must be a CachedPosture")
        expires_at = self._clock() + ttl_milliseconds(ttl) / 1000
        with self._lock:
            self._entries[device_id] = (expires_at, value)
            self._entries.move_to_end(device_id)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def invalidate(self, device_id: str) -> None:
        require_device_id(device_id)
        with self._lock:
            self._entries.pop(device_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
