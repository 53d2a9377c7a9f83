"""The transmitter: turns outbox events into queued SETs, in the state change's transaction.

:class:`Transmitter` is built once per app (:mod:`posture_gateway.wiring`). Its
:meth:`Transmitter.outbox_listener` is registered with ``SqlStorage.add_outbox_listener``: for
every batch a unit of work adds to the outbox it maps the events (:mod:`.mapping`), selects
the live streams that requested the event type and carry its subject (:mod:`.subjects`),
builds one SET claims set per stream (:mod:`.sets`) and inserts one ``ssf_deliveries`` row per
stream, all on the unit of work's connection. So the SET exists iff the state change
committed; nothing is lost between the store and the network. After the commit the writing
process kicks its delivery worker (``uow.call_after``).

One row per event per matching stream (not one per event fanned out later): the matching is
done against the streams and subjects as they are in the very transaction that commits the
change (a stream created later does not get older events, one deleted earlier gets none),
each row is claimed, retried and acknowledged on its own, and a slow receiver never delays
another. The cost is paid only by the rare events that become signals (a compliance flip, a
revocation), never by an ordinary check-in (one set lookup per event type).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from mdm_core.bus.events import DomainEvent
from mdm_core.storage.outbox import OutboxListener
from mdm_core.storage.sql.uow import SqlUnitOfWork
from posture_gateway.signals.mapping import SOURCE_TYPES, Signal, signal_for
from posture_gateway.signals.sets import new_jti, set_claims
from posture_gateway.signals.settings import SignalsSettings
from posture_gateway.signals.store import NewDelivery, SignalStore, StreamRow
from posture_gateway.signals.subjects import (
    UserRef,
    candidate_keys,
    complex_subject,
    decide,
    user_subject,
)
from posture_gateway.signals.vocabulary import PUSH

__all__ = ["Transmitter"]

log = logging.getLogger(__name__)


def _method(stream: StreamRow) -> str:
    return "push" if stream.method == PUSH else "poll"


class Transmitter:
    """Maps and queues; delivery is :class:`posture_gateway.signals.delivery.DeliveryWorker`."""

    def __init__(self, settings: SignalsSettings, *, issuer: str) -> None:
        self.settings = settings
        self.issuer = issuer
        self._kicks: list[Any] = []

    def on_commit(self, callback: Any) -> None:
        """Called after a commit that queued push SETs (the delivery worker's ``kick``)."""
        self._kicks.append(callback)

    def kick(self) -> None:
        for callback in self._kicks:
            callback()

    def outbox_listener(self, uow: SqlUnitOfWork) -> OutboxListener:
        return _Listener(self, uow)

    # ---- building rows ------------------------------------------------------------------

    def stream_event(
        self,
        store: SignalStore,
        stream: StreamRow,
        event_type: str,
        body: dict[str, Any],
        *,
        txn: str,
        now: datetime,
    ) -> NewDelivery:
        """Queue an SSF stream-protocol event (verification, stream-updated) about
        ``stream`` itself: ``sub_id`` is the stream (SSF 1.0 sections 8.1.4.1, 8.1.5)."""
        row = self._row(
            stream,
            txn=txn,
            sub_id={"format": "opaque", "id": stream.stream_id},
            event_type=event_type,
            body=body,
            now=now,
        )
        store.enqueue([row], now)
        return row

    def _row(
        self,
        stream: StreamRow,
        *,
        txn: str,
        sub_id: dict[str, Any],
        event_type: str,
        body: dict[str, Any],
        now: datetime,
    ) -> NewDelivery:
        jti = new_jti()
        claims = set_claims(
            issuer=self.issuer,
            aud=stream.config["aud"],
            iat=int(now.timestamp()),
            jti=jti,
            txn=txn,
            sub_id=sub_id,
            event_type=event_type,
            body=body,
        )
        return NewDelivery(stream.stream_id, jti, txn, event_type, claims, _method(stream))

    def rows_for(
        self,
        store: SignalStore,
        signals: Sequence[tuple[DomainEvent, Signal]],
        users: dict[str, UserRef],
        now: datetime,
    ) -> list[NewDelivery]:
        receivers = {r.client_id for r in self.settings.receivers}
        # A stream of a receiver no longer configured gets nothing (fail closed).
        streams = [s for s in store.live_streams() if s.client_id in receivers]
        rows: list[NewDelivery] = []
        default_all = self.settings.default_subjects == "ALL"
        for event, signal in signals:
            wanted = [
                s for s in streams if signal.event_type in s.config.get("events_delivered", ())
            ]
            if not wanted:
                continue
            user = users.get(signal.user_id) if signal.user_id else None
            keys = candidate_keys(user, signal.device_id, self.issuer)
            matches = store.matching_subjects([s.stream_id for s in wanted], keys)
            if signal.complex_subject:
                sub_id = complex_subject(user, signal.device_id, self.issuer)
            elif user is not None:
                sub_id = user_subject(user, self.issuer)
            else:
                continue
            for stream in wanted:
                if decide(default_all, matches.get(stream.stream_id, ())):
                    rows.append(
                        self._row(
                            stream,
                            txn=event.id,
                            sub_id=sub_id,
                            event_type=signal.event_type,
                            body=signal.body,
                            now=now,
                        )
                    )
        return rows


class _Listener:
    """One unit of work's listener (built per unit of work; cheap until a signal appears)."""

    __slots__ = ("_transmitter", "_uow")

    def __init__(self, transmitter: Transmitter, uow: SqlUnitOfWork) -> None:
        self._transmitter = transmitter
        self._uow = uow

    def events_added(self, events: Sequence[DomainEvent]) -> None:
        found: list[tuple[DomainEvent, Signal]] = []
        for event in events:
            if event.type in SOURCE_TYPES:
                signal = signal_for(event)
                if signal is not None:
                    found.append((event, signal))
        if not found:
            return
        uow = self._uow
        users: dict[str, UserRef] = {}
        for _, signal in found:
            if signal.user_id and signal.user_id not in users:
                record = uow.directory_users.get(signal.user_id)
                email = record.email if record is not None else None
                users[signal.user_id] = UserRef(signal.user_id, email)
        store = SignalStore(uow.conn, uow.dialect)
        now = datetime.now(UTC)
        rows = self._transmitter.rows_for(store, found, users, now)
        if not rows:
            return
        store.enqueue(rows, now)
        log.info("queued %d SET(s) for %d event(s)", len(rows), len(found))
        if any(r.method == "push" for r in rows):
            uow.call_after(self._transmitter.kick)
