"""The production :class:`~mdm_core.bus.events.EventBus`: domain events on one Redis Stream.

Owns how events cross process boundaries so that every gateway and MDM process learns of
posture changes. ``publish`` appends the event (``DomainEvent.to_json`` as JSON bytes) to the
stream ``posture:events`` with ``XADD ... MAXLEN ~ N``. Each bus instance has its own read
position (no consumer group: every process must see every event, this is fan-out, not work
sharing) and one background thread that follows the stream with ``XREAD BLOCK`` and calls the
matching handlers in stream order.

Why Streams and not pub/sub: see ``docs/decisions.md``. In short, a reader that loses its
connection for a moment resumes from the last entry it processed, so nothing published during
the gap is lost (pub/sub would drop it silently). Loss is only possible when a reader falls
more than ``maxlen`` entries behind, or Redis itself loses the stream; the reader detects that
(the entry it last read is gone, or after an outage the stream ends below its position),
logs an error and calls ``on_gap`` so the owner can drop caches built from events.

Semantics, matching :class:`mdm_core.bus.events.InProcessBus` (the shared contract suite is
``tests/contracts/test_event_bus.py``):

- a subscription receives the matching events appended after ``subscribe`` returned
  (``subscribe`` resolves ``$`` to a concrete stream id synchronously, so none are missed
  while the reader thread starts);
- delivery is asynchronous and at least once; order is stream order, so events from one
  publisher arrive in the order it published them;
- a handler that raises is logged and the others still run; an undecodable entry is logged
  and skipped;
- connection errors while reading are logged and retried with capped exponential backoff and
  jitter, never in a busy loop;
- ``publish`` and ``subscribe`` raise :class:`mdm_core.domain.infra_errors.InfraUnavailable` when
  Redis cannot be reached (the outbox relay retries publishing later);
- ``close`` stops the reader (within about ``block_ms``) but leaves the client to its owner.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import redis

from mdm_core.bus.events import DomainEvent, EventHandler, matches
from mdm_core.domain.infra_errors import redis_errors
from mdm_core.redis_backends.client import require_timeouts

__all__ = ["DEFAULT_STREAM", "RedisEventBus"]

log = logging.getLogger(__name__)

DEFAULT_STREAM = "posture:events"
_FIELD = b"event"
_ZERO_ID = (0, 0)

StreamId = tuple[int, int]
_XReadReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]


def _parse_id(raw: bytes | str) -> StreamId:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _format_id(stream_id: StreamId) -> str:
    return f"{stream_id[0]}-{stream_id[1]}"


@dataclass(eq=False)
class _Subscription:
    pattern: str
    handler: EventHandler
    after: StreamId  # deliver only entries with a larger id
    active: bool = True


class RedisEventBus:
    """Publish/subscribe on a Redis Stream; one reader thread per instance.

    ``client`` is the process's shared ``redis.Redis`` (``decode_responses=False``, with a
    socket timeout larger than ``block_ms``). ``maxlen`` bounds the stream (approximate
    trimming); ``block_ms`` is how long one ``XREAD`` waits, which also bounds how long
    ``close`` takes; ``batch`` is the ``COUNT`` of one read. ``backoff_initial`` and
    ``backoff_max`` (seconds) shape the reconnect delay. ``on_gap`` is called from the reader
    thread when events may have been lost (the reader fell behind the trimmed horizon, or the
    stream was lost); it must not raise for the bus to stay useful, but if it does it is logged.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        stream: str = DEFAULT_STREAM,
        maxlen: int = 100_000,
        block_ms: int = 500,
        batch: int = 100,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        on_gap: Callable[[], None] | None = None,
    ) -> None:
        timeout = require_timeouts(client)
        if not stream:
            raise ValueError("stream name must not be empty")
        if maxlen < 1 or batch < 1:
            raise ValueError("maxlen and batch must be positive")
        if block_ms < 1 or block_ms / 1000 >= timeout:
            raise ValueError(
                f"block_ms must be positive and below the client's socket timeout ({timeout}s)"
            )
        if not 0 < backoff_initial <= backoff_max:
            raise ValueError("need 0 < backoff_initial <= backoff_max")
        self._client = client
        self._stream = stream
        self._maxlen = maxlen
        self._block_ms = block_ms
        self._batch = batch
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._on_gap = on_gap
        self._gap_listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._subs: list[_Subscription] = []
        self._cursor: StreamId | None = None  # last id read; None until the reader starts
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False
        self.read_failures = 0  # total failed reads since start (observability, tests)
        self.gaps = 0  # times the reader found it may have missed events

    # -- EventBus ---------------------------------------------------------------------------

    def publish(self, event: DomainEvent) -> None:
        """Append ``event`` to the stream; raises ``InfraUnavailable`` if Redis is down."""
        if self._closed:
            raise RuntimeError("event bus is closed")
        body = json.dumps(event.to_json(), separators=(",", ":")).encode()
        with redis_errors("XADD"):
            self._client.xadd(self._stream, {_FIELD: body}, maxlen=self._maxlen, approximate=True)

    def subscribe(self, pattern: str, handler: EventHandler) -> Callable[[], None]:
        """Register ``handler`` for events appended from now on; returns its unsubscriber."""
        if self._closed:
            raise RuntimeError("event bus is closed")
        after = self._last_generated_id()
        sub = _Subscription(pattern, handler, after)
        with self._lock:
            self._subs.append(sub)
            if self._thread is None:
                self._cursor = after
                self._thread = threading.Thread(
                    target=self._run, name=f"redis-bus:{self._stream}", daemon=True
                )
                self._thread.start()

        def unsubscribe() -> None:
            with self._lock:
                sub.active = False
                if sub in self._subs:
                    self._subs.remove(sub)

        return unsubscribe

    def close(self) -> None:
        """Stop the reader thread and drop subscriptions. Idempotent; the client stays open."""
        self._closed = True
        self._stop.set()
        with self._lock:
            for sub in self._subs:
                sub.active = False
            self._subs.clear()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self._block_ms / 1000 + 5.0)

    # -- reading ----------------------------------------------------------------------------

    def _last_generated_id(self) -> StreamId:
        """The id ``$`` stands for right now: the stream's last generated id, 0-0 if none."""
        with redis_errors("XINFO STREAM"):
            try:
                info: dict[str, Any] = self._client.xinfo_stream(self._stream)
            except redis.exceptions.ResponseError as exc:
                if "no such key" in str(exc).lower():
                    return _ZERO_ID
                raise
        return _parse_id(info["last-generated-id"])

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                if failures:
                    self._verify_position()
                self._read_once()
            except Exception as exc:  # redis errors, and anything unexpected: back off, retry
                failures += 1
                self.read_failures += 1
                delay = self._backoff_delay(failures)
                log.warning(
                    "event bus reader error on %s (%s), retrying in %.2fs",
                    self._stream,
                    type(exc).__name__,
                    delay,
                )
                self._stop.wait(delay)
                continue
            if failures:  # back after a lost connection: caches built from events resync
                self._notify_gap_listeners()
            failures = 0

    def add_gap_listener(self, listener: Callable[[], None]) -> None:
        """Also call ``listener`` (reader thread) when events may have been lost AND after
        the reader got its connection back (owners of event-fed caches drop them)."""
        with self._lock:
            self._gap_listeners.append(listener)

    def _notify_gap_listeners(self) -> None:
        with self._lock:
            listeners = list(self._gap_listeners)
        for listener in listeners:
            try:
                listener()
            except Exception:
                log.exception("event bus gap listener failed")

    def _backoff_delay(self, failures: int) -> float:
        ceiling = min(self._backoff_max, self._backoff_initial * 2 ** min(failures - 1, 30))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security

    def _read_once(self) -> None:
        assert self._cursor is not None
        before = self._cursor
        response = cast(
            _XReadReply,
            self._client.xread(
                {self._stream: _format_id(before)}, count=self._batch, block=self._block_ms
            ),
        )
        if not response:
            return
        if before != _ZERO_ID:
            self._check_gap(before)
        for _name, entries in response:
            for raw_id, fields in entries:
                if self._stop.is_set():
                    return
                entry_id = _parse_id(raw_id)
                self._dispatch(entry_id, fields)
                self._cursor = entry_id

    def _verify_position(self) -> None:
        """After an outage: if the stream now ends before our position (Redis restarted empty,
        or failed over to a replica that had not seen everything we read), new entries could
        get ids below it and would never be read. Move back to the stream's end, and report a
        gap: what the new primary accepted while we were away may be below that end too."""
        assert self._cursor is not None
        last = self._last_generated_id()
        if last >= self._cursor:
            return
        log.error(
            "event bus stream %s went back from %s to %s",
            self._stream,
            _format_id(self._cursor),
            _format_id(last),
        )
        with self._lock:
            self._cursor = last
            for sub in self._subs:
                sub.after = min(sub.after, last)
        self._report_gap()

    def _check_gap(self, before: StreamId) -> None:
        """Trimming keeps a suffix of the stream: if our last entry is gone, so may be others."""
        key = _format_id(before)
        if self._client.xrange(self._stream, min=key, max=key, count=1):
            return
        log.error(
            "event bus reader on %s lost its position %s: events may have been missed",
            self._stream,
            key,
        )
        self._report_gap()

    def _report_gap(self) -> None:
        self.gaps += 1
        if self._on_gap is not None:
            try:
                self._on_gap()
            except Exception:
                log.exception("event bus on_gap callback failed")
        self._notify_gap_listeners()

    def _dispatch(self, entry_id: StreamId, fields: dict[bytes, bytes]) -> None:
        try:
            event = DomainEvent.from_json(json.loads(fields[_FIELD]))
        except Exception:  # a foreign or corrupt entry must not stop the reader
            log.error("event bus skipped undecodable entry %s", _format_id(entry_id))
            return
        with self._lock:
            targets = [
                s for s in self._subs if s.after < entry_id and matches(s.pattern, event.type)
            ]
        for sub in targets:
            if not sub.active:
                continue
            try:
                sub.handler(event)
            except Exception:  # a broken subscriber must not block the others
                log.exception("event handler failed for %s %s", event.type, event.id)
