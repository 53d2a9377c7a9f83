"""Prometheus metrics of the identity connectors: every refused outside token is counted.

``posture_external_token_refusals_total{kind, reason}`` (kind: ``entra_hint``,
``upstream_id_token``; reason: a :mod:`idp_connectors.errors` reason code) and
``posture_external_tokens_verified_total{kind}``.
"""

from __future__ import annotations

from prometheus_client import Counter

__all__ = ["EXTERNAL_TOKEN_REFUSALS", "EXTERNAL_TOKENS_VERIFIED"]

EXTERNAL_TOKEN_REFUSALS = Counter(
    "posture_external_token_refusals",
    "Tokens from outside identity providers refused, by token kind and reason.",
    ["kind", "reason"],
)
EXTERNAL_TOKENS_VERIFIED = Counter(
    "posture_external_tokens_verified",
    "Tokens from outside identity providers accepted, by token kind.",
    ["kind"],
)
