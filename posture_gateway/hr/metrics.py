"""Prometheus metrics of the HR webhooks (exported on the existing ``/metrics``).

- ``posture_hr_events_total{source, outcome}``: employee events of accepted deliveries, by
  what they did (:data:`posture_gateway.hr.service.OUTCOMES`); ``outcome="unmatched"`` and
  ``"ambiguous"`` count employees no directory user could be found for;
- ``posture_hr_refused_total{source, reason}``: deliveries refused (bad signature, stale,
  malformed, ...; :data:`REFUSAL_REASONS`);
- ``posture_hr_replays_total{source}``: redelivered bodies answered from the stored outcome;
- ``posture_hr_event_failures_total{source}``: employee events that could not be applied (their
  unit of work rolled back; the delivery answered 503 and its retry applies them);
- ``posture_hr_records_purged_total``: delivery records deleted past ``hr.delivery_retention``.

Labels are fixed sets: no employee, user or delivery id is a label value.
"""

from __future__ import annotations

from prometheus_client import Counter

__all__ = ["EVENTS", "REFUSED", "REPLAYS", "FAILED", "PURGED", "REFUSAL_REASONS", "SOURCES"]

SOURCES = ("bamboohr", "generic")

#: Every ``HrError`` code the webhook routes answer with, but ``not_all_applied`` (a delivery
#: partly applied is not refused: its failed events count in :data:`FAILED`).
REFUSAL_REASONS = (
    "missing_signature",
    "invalid_signature",
    "invalid_timestamp",
    "stale_timestamp",
    "future_timestamp",
    "invalid_json",
    "invalid_request",
    "unsupported_media_type",
    "payload_too_large",
    "event_id_reused",
    "not_configured",
)

EVENTS = Counter(
    "posture_hr_events",
    "HR webhook employee events accepted, by source and what they did.",
    ["source", "outcome"],
)
REFUSED = Counter(
    "posture_hr_refused",
    "HR webhook deliveries refused (nothing written), by source and reason.",
    ["source", "reason"],
)
REPLAYS = Counter(
    "posture_hr_replays",
    "HR webhook deliveries already accepted once, answered with the stored outcome.",
    ["source"],
)
FAILED = Counter(
    "posture_hr_event_failures",
    "HR webhook employee events that could not be applied (rolled back; the sender retries).",
    ["source"],
)
PURGED = Counter(
    "posture_hr_records_purged",
    "HR delivery records deleted past their retention.",
)
