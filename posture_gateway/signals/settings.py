"""Settings of the Shared Signals transmitter: the ``signals`` section of ``Settings``.

Receivers are OAuth clients of our own OpenID provider (``oidc.clients_file``, confidential)
that obtain ``ssf.manage`` / ``ssf.read`` access tokens with the client credentials grant and
manage their own streams. With no receiver configured the transmitter's endpoints answer but
nobody can create a stream. Validated by pydantic at start (``docs/configuration.md``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import ConfigDict, Field, SecretStr, model_validator

from mdm_core.support.durations import DurationsModel

__all__ = ["SignalsSettings", "ReceiverSettings", "PushSettings", "SCOPE_MANAGE", "SCOPE_READ"]

SCOPE_MANAGE = "ssf.manage"
SCOPE_READ = "ssf.read"


class _Strict(DurationsModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReceiverSettings(_Strict):
    """One SSF receiver: an OAuth client allowed to manage its own event streams."""

    client_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    # The ``aud`` of its streams' SETs (SSF 1.0 section 8.1.1: transmitter-supplied). Okta:
    # the org URL, e.g. https://example.okta.com. Default: the client id.
    audience: str | None = Field(default=None, min_length=1, max_length=512)
    max_streams: int = Field(default=5, ge=1, le=100)
    # A receiver that does not manage streams itself (Okta's Security Events Provider
    # ingestion: Okta fetches our well-known metadata and JWKS, we push to
    # https://{org}.okta.com/security/api/v1/security-events): the stream
    # ``cfg-<client_id>`` is kept at start to push ``events`` there (https; http only to
    # loopback in dev_mode), with ``push_authorization_header`` if set. Such a receiver needs
    # no OAuth client; if it is one, it may read and pause its stream like any other.
    push_endpoint: str | None = Field(default=None, min_length=1, max_length=2048)
    push_authorization_header: SecretStr | None = None
    events: tuple[str, ...] = ()  # default: every supported event type

    @property
    def aud(self) -> str:
        return self.audience or self.client_id

    @property
    def configured_stream_id(self) -> str:
        return f"cfg-{self.client_id}"


class PushSettings(_Strict):
    """Push delivery (RFC 8935): timeouts, retries and backoff."""

    timeout: timedelta = Field(default=timedelta(seconds=3), gt=timedelta(0))
    connect_timeout: timedelta = Field(default=timedelta(seconds=2), gt=timedelta(0))
    max_attempts: int = Field(default=10, ge=1, le=100)
    backoff_base: timedelta = Field(default=timedelta(seconds=1), gt=timedelta(0))
    backoff_max: timedelta = Field(default=timedelta(minutes=10), gt=timedelta(0))
    # A delivery a worker claimed but did not settle (crash) is retried after this.
    lease: timedelta = Field(default=timedelta(seconds=30), gt=timedelta(0))
    batch: int = Field(default=50, ge=1, le=1000)

    @model_validator(mode="after")
    def _ordered(self) -> PushSettings:
        if self.backoff_max < self.backoff_base:
            raise ValueError("backoff_max must not be below backoff_base")
        if self.lease <= self.timeout + self.connect_timeout:
            raise ValueError("lease must exceed timeout + connect_timeout")
        return self


class SignalsSettings(_Strict):
    receivers: tuple[ReceiverSettings, ...] = ()
    # SSF 1.0 section 7.1 default_subjects: ALL = a new stream carries every subject until
    # one is removed; NONE = only subjects added with add_subject.
    default_subjects: Literal["ALL", "NONE"] = "ALL"
    push: PushSettings = Field(default_factory=PushSettings)
    # How often each served worker looks for due deliveries (retries, other processes' rows).
    sweep_interval: timedelta = Field(default=timedelta(seconds=2), gt=timedelta(0))
    # Longest a poll request (RFC 8936, returnImmediately false) waits for a SET.
    poll_max_wait: timedelta = Field(
        default=timedelta(seconds=10), ge=timedelta(0), le=timedelta(seconds=30)
    )
    poll_max_events: int = Field(default=100, ge=1, le=1000)
    # Delivered and permanently failed rows are kept this long (then purged by the sweep).
    retention: timedelta = Field(default=timedelta(days=7), gt=timedelta(0))
    # Receiver-supplied sizes: events requested, description, subjects per stream.
    max_subjects_per_stream: int = Field(default=10_000, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _unique(self) -> SignalsSettings:
        seen: set[str] = set()
        for receiver in self.receivers:
            if receiver.client_id in seen:
                raise ValueError(f"receivers: duplicate client_id {receiver.client_id!r}")
            seen.add(receiver.client_id)
        return self

    def receiver(self, client_id: str) -> ReceiverSettings | None:
        for receiver in self.receivers:
            if receiver.client_id == client_id:
                return receiver
        return None
