"""Stream management (SSF 1.0 section 8.1): configuration, status, subjects, verification.

:class:`StreamService` does what the endpoints ask, each in one unit of work that also writes
the audit entry (``ssf:<client_id>`` as the actor), and only ever on the calling receiver's own
streams: another receiver's stream is "not found" (404), never revealed.

Receiver input is validated before anything is read (:class:`StreamIn`): bounded sizes,
``delivery.method`` one of the two URNs, a push ``endpoint_url`` over https (http only to a
loopback host, and only in ``dev_mode``), no credentials or fragment in it, an
``authorization_header`` of printable ASCII. ``events_delivered`` is ``events_requested``
intersected with what we support (section 8.1.1). Transmitter-supplied properties in an
update must equal the stored values (section 8.1.1.3); on a create they are ignored.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.exc import IntegrityError

from mdm_core.storage.sql.uow import SqlStorage, SqlUnitOfWork
from posture_gateway.signals.auth import Receiver
from posture_gateway.signals.settings import ReceiverSettings, SignalsSettings
from posture_gateway.signals.store import SignalStore, StreamRow
from posture_gateway.signals.subjects import SubjectError, subject_key
from posture_gateway.signals.transmitter import Transmitter
from posture_gateway.signals.vocabulary import (
    EVENTS_SUPPORTED,
    POLL,
    PUSH,
    SSF_STREAM_UPDATED,
    SSF_VERIFICATION,
    STATUSES,
)

__all__ = [
    "ApiError",
    "StreamService",
    "StreamIn",
    "check_endpoint_url",
    "keep_configured_streams",
]

_TRANSMITTER_FIELDS = ("iss", "aud", "events_supported", "events_delivered")


class ApiError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint_url(url: str, *, dev_mode: bool) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("endpoint_url must be an absolute https URL")
    if parts.username or parts.password or parts.fragment:
        raise ValueError("endpoint_url must not carry credentials or a fragment")
    if parts.scheme == "http" and not (dev_mode and _loopback(parts.hostname)):
        raise ValueError("endpoint_url must be https (http only to loopback in dev_mode)")
    return url


class DeliveryIn(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    method: Literal["urn:ietf:rfc:8935", "urn:ietf:rfc:8936"]
    endpoint_url: str | None = Field(default=None, min_length=1, max_length=2048)
    authorization_header: str | None = Field(default=None, min_length=1, max_length=4096)

    @field_validator("authorization_header")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and not all(" " <= c <= "~" for c in value):
            raise ValueError("authorization_header must be printable ASCII (no CR/LF)")
        return value


class StreamIn(BaseModel):
    """The receiver-supplied properties of a stream configuration (SSF 1.0 8.1.1)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    events_requested: tuple[str, ...] = Field(default=(), max_length=32)
    delivery: DeliveryIn | None = None
    description: str | None = Field(default=None, max_length=512)

    @field_validator("events_requested")
    @classmethod
    def _uris(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(len(v) > 256 or not v for v in value):
            raise ValueError("each requested event type is a URI of at most 256 characters")
        return tuple(dict.fromkeys(value))


def _parse(body: object, model: type[BaseModel]) -> Any:
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "the body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError(400, "invalid_request", f"{where}: {first['msg']}") from exc


def _stream_id(body: Mapping[str, Any] | None, query: str | None = None) -> str:
    value = query if query is not None else (body or {}).get("stream_id")
    if not isinstance(value, str) or not value or len(value) > 64:
        raise ApiError(400, "invalid_request", "stream_id is required")
    return value


@dataclass(frozen=True)
class StreamService:
    settings: SignalsSettings
    storage: SqlStorage
    transmitter: Transmitter
    issuer: str
    poll_base_url: str  # the poll endpoint_url is this + "/" + stream_id
    dev_mode: bool = False

    # ---- helpers ------------------------------------------------------------------------

    def _owned(self, store: SignalStore, receiver: Receiver, stream_id: str) -> StreamRow:
        stream = store.get_stream(stream_id, lock=True)
        if stream is None or stream.client_id != receiver.client_id:
            raise ApiError(404, "not_found", "no such stream")
        return stream

    def _audit(
        self,
        uow: SqlUnitOfWork,
        receiver: Receiver,
        action: str,
        stream_id: str,
        detail: dict[str, Any],
    ) -> None:
        uow.audit.record(
            f"ssf:{receiver.client_id}", f"ssf.{action}", f"ssf-stream:{stream_id}", "ok", detail
        )

    def _delivery(self, stream_id: str, given: DeliveryIn | None) -> dict[str, Any]:
        if given is None or given.method == POLL:
            return {"method": POLL, "endpoint_url": f"{self.poll_base_url}/{stream_id}"}
        if not given.endpoint_url:
            raise ApiError(400, "invalid_request", "delivery.endpoint_url is required for push")
        try:
            url = check_endpoint_url(given.endpoint_url, dev_mode=self.dev_mode)
        except ValueError as exc:
            raise ApiError(400, "invalid_request", f"delivery.endpoint_url: {exc}") from exc
        out: dict[str, Any] = {"method": PUSH, "endpoint_url": url}
        if given.authorization_header:
            out["authorization_header"] = given.authorization_header
        return out

    def _config(self, receiver: Receiver, stream_id: str, given: StreamIn) -> dict[str, Any]:
        delivered = [e for e in given.events_requested if e in EVENTS_SUPPORTED]
        config: dict[str, Any] = {
            "aud": receiver.settings.aud,
            "events_requested": list(given.events_requested),
            "events_delivered": delivered,
            "delivery": self._delivery(stream_id, given.delivery),
        }
        if given.description is not None:
            config["description"] = given.description
        return config

    def view(self, stream: StreamRow) -> dict[str, Any]:
        """The configuration as the receiver reads it (never the authorization header)."""
        config = stream.config
        delivery = {k: v for k, v in config["delivery"].items() if k != "authorization_header"}
        out: dict[str, Any] = {
            "stream_id": stream.stream_id,
            "iss": self.issuer,
            "aud": config["aud"],
            "events_supported": list(EVENTS_SUPPORTED),
            "events_requested": config["events_requested"],
            "events_delivered": config["events_delivered"],
            "delivery": delivery,
        }
        if "description" in config:
            out["description"] = config["description"]
        return out

    def _check_transmitter_fields(self, body: Mapping[str, Any], stream: StreamRow) -> None:
        current = self.view(stream)
        for name in _TRANSMITTER_FIELDS:
            if name in body and body[name] != current[name]:
                raise ApiError(400, "invalid_request", f"{name} is transmitter-supplied")

    # ---- configuration (8.1.1) ----------------------------------------------------------

    def create(self, receiver: Receiver, body: object) -> dict[str, Any]:
        given = _parse(body, StreamIn)
        now = datetime.now(UTC)
        stream_id = uuid.uuid4().hex
        config = self._config(receiver, stream_id, given)
        with self.storage.unit_of_work() as uow:
            store = SignalStore(uow.conn, uow.dialect)
            if len(store.streams_of(receiver.client_id)) >= receiver.settings.max_streams:
                raise ApiError(409, "conflict", "this receiver has its maximum number of streams")
            stream = StreamRow(stream_id, receiver.client_id, config, "enabled", None, now, now)
            store.create_stream(stream)
            self._audit(uow, receiver, "stream.created", stream_id, self._audit_detail(config))
        return self.view(stream)

    def read(self, receiver: Receiver, stream_id: str | None) -> Any:
        with self.storage.unit_of_work() as uow:
            store = SignalStore(uow.conn, uow.dialect)
            if stream_id is None:
                return [self.view(s) for s in store.streams_of(receiver.client_id)]
            return self.view(self._owned(store, receiver, _stream_id(None, stream_id)))

    def update(self, receiver: Receiver, body: object, *, replace: bool) -> dict[str, Any]:
        given = _parse(body, StreamIn)
        assert isinstance(body, dict)
        stream_id = _stream_id(body)
        now = datetime.now(UTC)
        with self.storage.unit_of_work() as uow:
            store = SignalStore(uow.conn, uow.dialect)
            stream = self._owned(store, receiver, stream_id)
            self._check_transmitter_fields(body, stream)
            if replace:
                config = self._config(receiver, stream_id, given)
            else:
                config = dict(stream.config)
                fresh = self._config(receiver, stream_id, given)
                for name in ("events_requested", "events_delivered", "delivery", "description"):
                    source = "events_requested" if name == "events_delivered" else name
                    if source in body and name in fresh:
                        config[name] = fresh[name]
            store.update_stream(stream_id, config=config, at=now)
            if config["delivery"]["method"] != stream.config["delivery"]["method"]:
                store.set_method(
                    stream_id, "push" if config["delivery"]["method"] == PUSH else "poll"
                )
            action = "stream.replaced" if replace else "stream.updated"
            self._audit(uow, receiver, action, stream_id, self._audit_detail(config))
            updated = StreamRow(
                stream_id,
                stream.client_id,
                config,
                stream.status,
                stream.reason,
                stream.created_at,
                now,
            )
        return self.view(updated)

    def delete(self, receiver: Receiver, stream_id: str | None) -> None:
        sid = _stream_id(None, stream_id)
        with self.storage.unit_of_work() as uow:
            store = SignalStore(uow.conn, uow.dialect)
            self._owned(store, receiver, sid)
            store.delete_stream(sid)
            self._audit(uow, receiver, "stream.deleted", sid, {})

    @staticmethod
    def _audit_detail(config: Mapping[str, Any]) -> dict[str, Any]:
        delivery = config["delivery"]
        return {
            "events_delivered": list(config["events_delivered"]),
            "method": delivery["method"],
            "endpoint_url": delivery.get("endpoint_url"),
        }

    # ---- status (8.1.2) -----------------------------------------------------------------

    def status(self, receiver: Receiver, stream_id: str | None) -> dict[str, Any]:
        with self.storage.unit_of_work() as uow:
            store = SignalStore(uow.conn, uow.dialect)
            stream = self._owned(store, receiver, _stream_id(None, stream_id))
        out: dict[str, Any] = {"stream_id": stream.stream_id, "status": stream.status}
        if stream.reason:
            out["reason"] = stream.reason
        return out

    def set_status(self, receiver: Receiver, body: object) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", "the body must be a JSON object")
        stream_id = _stream_id(body)
        status, reason = body.get("status"), body.get("reason")
        if status not in STATUSES:
            raise ApiError(400, "invalid_request", f"status must be one of {list(STATUSES)}")
        if reason is not None and (not isinstance(reason, str) or len(reason) > 512):
            raise ApiError(400, "invalid_request", "reason must be a string of at most 512 chars")
        now = datetime.now(UTC)
        queued = False
        with self.storage.unit_of_work() as uow:
            store = SignalStore(uow.conn, uow.dialect)
            stream = self._owned(store, receiver, stream_id)
            dropped = 0
            if status != stream.status:
                store.update_stream(stream_id, status=status, reason=reason, at=now)
                if status == "disabled":  # 8.1.2: a disabled stream holds nothing
                    dropped = store.drop_pending(stream_id)
                else:  # 8.1.5: tell the receiver (held while paused)
                    body_out: dict[str, Any] = {"status": status}
                    if reason:
                        body_out["reason"] = reason
                    row = self.transmitter.stream_event(
                        store, stream, SSF_STREAM_UPDATED, body_out, txn=uuid.uuid4().hex, now=now
                    )
                    queued = row.method == "push"
            self._audit(
                uow,
                receiver,
                "stream.status",
                stream_id,
                {"from": stream.status, "to": status, "reason": reason, "dropped": dropped},
            )
        if queued:
            self.transmitter.kick()
        out: dict[str, Any] = {"stream_id": stream_id, "status": status}
        if reason:
            out["reason"] = reason
        return out

    # ---- subjects (8.1.3) ---------------------------------------------------------------

    def change_subject(self, receiver: Receiver, body: object, *, add: bool) -> None:
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", "the body must be a JSON object")
        stream_id = _stream_id(body)
        subject = body.get("subject")
        try:
            key = subject_key(subject)
        except SubjectError as exc:
            raise ApiError(400, "invalid_request", f"subject: {exc}") from exc
        verified = body.get("verified", True)
        if not isinstance(verified, bool):
            raise ApiError(400, "invalid_request", "verified must be a boolean")
        assert isinstance(subject, dict)
        now = datetime.now(UTC)
        with self.storage.unit_of_work() as uow:
            store = SignalStore(uow.conn, uow.dialect)
            self._owned(store, receiver, stream_id)
            if store.count_subjects(stream_id) >= self.settings.max_subjects_per_stream:
                raise ApiError(409, "conflict", "this stream has its maximum number of subjects")
            store.put_subject(stream_id, key, subject, add, now)
            action = "subject.added" if add else "subject.removed"
            self._audit(uow, receiver, action, stream_id, {"subject": key})

    # ---- verification (8.1.4) -----------------------------------------------------------

    def verify(self, receiver: Receiver, body: object) -> None:
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", "the body must be a JSON object")
        stream_id = _stream_id(body)
        state = body.get("state")
        if state is not None and (not isinstance(state, str) or len(state) > 256):
            raise ApiError(400, "invalid_request", "state must be a string of at most 256 chars")
        now = datetime.now(UTC)
        with self.storage.unit_of_work() as uow:
            store = SignalStore(uow.conn, uow.dialect)
            stream = self._owned(store, receiver, stream_id)
            if stream.status == "disabled":
                raise ApiError(409, "conflict", "the stream is disabled")
            event: dict[str, Any] = {} if state is None else {"state": state}
            row = self.transmitter.stream_event(
                store, stream, SSF_VERIFICATION, event, txn=uuid.uuid4().hex, now=now
            )
            self._audit(uow, receiver, "stream.verification", stream_id, {"jti": row.jti})
        if row.method == "push":
            self.transmitter.kick()


def _configured(receiver: ReceiverSettings) -> dict[str, Any]:
    assert receiver.push_endpoint is not None
    delivery: dict[str, Any] = {"method": PUSH, "endpoint_url": receiver.push_endpoint}
    if receiver.push_authorization_header is not None:
        delivery["authorization_header"] = receiver.push_authorization_header.get_secret_value()
    events = list(receiver.events or EVENTS_SUPPORTED)
    return {
        "aud": receiver.aud,
        "events_requested": events,
        "events_delivered": [e for e in events if e in EVENTS_SUPPORTED],
        "delivery": delivery,
        "description": "configured in signals.receivers",
    }


def keep_configured_streams(service: StreamService, settings: SignalsSettings) -> None:
    """Create or update the stream of each receiver with a ``push_endpoint`` (at start; every
    worker does it, so a concurrent insert by another worker is taken as done)."""
    for receiver in settings.receivers:
        if receiver.push_endpoint is None:
            continue
        config = _configured(receiver)
        sid = receiver.configured_stream_id
        for _ in range(2):
            try:
                with service.storage.unit_of_work() as uow:
                    store = SignalStore(uow.conn, uow.dialect)
                    now = datetime.now(UTC)
                    stream = store.get_stream(sid, lock=True)
                    if stream is None:
                        store.create_stream(
                            StreamRow(sid, receiver.client_id, config, "enabled", None, now, now)
                        )
                        action = "stream.configured"
                    elif stream.config != config:
                        store.update_stream(sid, config=config, at=now)
                        action = "stream.reconfigured"
                    else:
                        break
                    uow.audit.record(
                        "ssf:config",
                        f"ssf.{action}",
                        f"ssf-stream:{sid}",
                        "ok",
                        StreamService._audit_detail(config),
                    )
                break
            except IntegrityError:
                continue  # another worker created it first: compare again
