"""Prometheus metrics of the transmitter (exported on the existing ``/metrics``).

- ``posture_ssf_deliveries_total{method, outcome}``: SET deliveries settled: ``delivered``,
  ``retry`` (an attempt failed, another is scheduled), ``failed`` (permanent), ``dropped``
  (the stream was disabled);
- ``posture_ssf_delivery_latency_seconds{method}``: from the row's commit (the state change)
  to the receiver's 202 (push) or acknowledgement (poll);
- ``posture_ssf_queue_depth``: undelivered SETs, all streams (refreshed by each sweep).

Labels are fixed sets: no stream id, receiver or subject is a label value.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["DELIVERIES", "LATENCY", "QUEUE_DEPTH"]

DELIVERIES = Counter(
    "posture_ssf_deliveries",
    "Shared Signals SET deliveries settled, by delivery method and outcome.",
    ["method", "outcome"],
)
LATENCY = Histogram(
    "posture_ssf_delivery_latency_seconds",
    "Seconds from the state change's commit to the receiver holding the SET.",
    ["method"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
QUEUE_DEPTH = Gauge(
    "posture_ssf_queue_depth",
    "Undelivered Shared Signals SETs (all streams).",
    multiprocess_mode="max",
)
