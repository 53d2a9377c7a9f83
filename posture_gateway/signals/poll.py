"""Poll delivery (RFC 8936): the receiver POSTs to its stream's poll endpoint.

Request (section 2.4): ``maxEvents`` (0 = only acknowledge), ``returnImmediately``, ``ack``
(jtis received and processed), ``setErrs`` (jti -> ``{err, description}``: received, refused).
Answer: ``{"sets": {jti: SET}, "moreAvailable": bool}``. Acknowledged rows are delivered;
``setErrs`` rows are recorded as failed with the receiver's words; SETs handed out but not
acknowledged are handed out again on the next poll (section 2.4: the transmitter keeps them
until acknowledged). A paused stream hands out nothing (its SETs are held), a disabled one
has none. Without ``returnImmediately`` the request waits for a SET up to
``signals.poll_max_wait`` (bounded long poll), checking every quarter second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mdm_core.storage.sql.uow import SqlStorage
from posture_gateway.signals.auth import Receiver
from posture_gateway.signals.metrics import DELIVERIES, LATENCY
from posture_gateway.signals.sets import sign_set
from posture_gateway.signals.settings import SignalsSettings
from posture_gateway.signals.store import SignalStore
from posture_gateway.signals.streams import ApiError, _parse
from posture_gateway.signals.vocabulary import POLL
from posture_gateway.signing.key_ring import KeyRing

__all__ = ["PollService", "PollIn"]

_TICK = 0.25


class SetError(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    err: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=512)


class PollIn(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    max_events: int | None = Field(default=None, alias="maxEvents", ge=0, le=10_000)
    return_immediately: bool = Field(default=False, alias="returnImmediately")
    ack: tuple[str, ...] = Field(default=(), max_length=1000)
    set_errs: dict[str, SetError] = Field(default_factory=dict, alias="setErrs", max_length=1000)


@dataclass(frozen=True)
class PollService:
    settings: SignalsSettings
    storage: SqlStorage
    keys: KeyRing

    def poll(self, receiver: Receiver, stream_id: str, body: object) -> dict[str, Any]:
        given: PollIn = _parse(body if body is not None else {}, PollIn)
        if any(len(j) > 64 for j in (*given.ack, *given.set_errs)):
            raise ApiError(400, "invalid_request", "a jti is at most 64 characters")
        limit = min(
            self.settings.poll_max_events,
            given.max_events if given.max_events is not None else self.settings.poll_max_events,
        )
        deadline = time.monotonic() + self.settings.poll_max_wait.total_seconds()
        settle = True
        while True:
            rows, more = self._once(receiver, stream_id, given, limit, settle)
            settle = False
            if rows or limit == 0 or given.return_immediately or time.monotonic() >= deadline:
                break
            time.sleep(_TICK)
        sets = {row.jti: sign_set(self.keys, row.claims) for row in rows}
        return {"sets": sets, "moreAvailable": more}

    def _once(
        self, receiver: Receiver, stream_id: str, given: PollIn, limit: int, settle: bool
    ) -> tuple[list[Any], bool]:
        now = datetime.now(UTC)
        with self.storage.unit_of_work() as uow:
            store = SignalStore(uow.conn, uow.dialect)
            stream = store.get_stream(stream_id)
            if stream is None or stream.client_id != receiver.client_id:
                raise ApiError(404, "not_found", "no such stream")
            if stream.method != POLL:
                raise ApiError(400, "invalid_request", "this stream is not a poll stream")
            if settle and (given.ack or given.set_errs):
                errors = {
                    jti: f"{e.err}: {e.description}"[:1000] for jti, e in given.set_errs.items()
                }
                created = store.settle_poll(stream_id, given.ack, errors, now)
                for at in created:
                    DELIVERIES.labels("poll", "delivered").inc()
                    LATENCY.labels("poll").observe(max(0.0, (now - at).total_seconds()))
                for _ in errors:
                    DELIVERIES.labels("poll", "failed").inc()
            if stream.status != "enabled" or limit == 0:
                return [], False
            return store.pending_poll(stream_id, limit)
