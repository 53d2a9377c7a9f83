"""The OpenID provider's tables (SQLAlchemy Core), on their OWN ``MetaData``.

``mdm_core`` must not know about OIDC, so these tables are not in
``mdm_core/storage/sql/tables.py``. They live in the same database and are created by the one
Alembic chain (revision ``0006_frontends``, applied by ``Database.migrate`` / ``posture db
migrate``); the gateway never creates tables itself. ``tests/contracts/test_schema.py``
compares the migrations with this ``MetaData`` too: a change here needs a revision.

Secrets are stored only as SHA-256 digests: authorization codes, refresh tokens and SSO
session ids. Access tokens are JWTs; only their ``jti`` is stored.

``gateway_sso_sessions`` (revision ``0008_sso_sessions``) belongs to
:mod:`posture_gateway.sso` (protocol-neutral: OIDC and SAML); it is declared here so
that every table of the gateway is on this one ``MetaData``.
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, Index, MetaData, String, Table, Text

__all__ = [
    "metadata",
    "oidc_codes",
    "oidc_tokens",
    "gateway_nonces",
    "gateway_login_transactions",
    "gateway_sso_sessions",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _ts(name: str, nullable: bool = False) -> Column[object]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


oidc_codes = Table(
    "oidc_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),  # SHA-256 hex of the code
    Column("client_id", String(128), nullable=False),
    Column("user_id", String(128), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("nonce", String(255), nullable=True),
    Column("code_challenge", String(128), nullable=False),
    Column("code_challenge_method", String(8), nullable=False),
    # auth_time (epoch), acr, amr, profile claims, posture claims, device id
    Column("subject", JSON, nullable=False),
    _ts("created_at"),
    _ts("expires_at"),
    _ts("used_at", nullable=True),
    Index("ix_oidc_codes_client_nonce", "client_id", "nonce"),
)

oidc_tokens = Table(
    "oidc_tokens",
    metadata,
    Column("id", String(64), primary_key=True),  # the access token's jti
    Column("client_id", String(128), nullable=False),
    Column("user_id", String(128), nullable=False, index=True),
    Column("device_id", String(64), nullable=True, index=True),
    Column("scope", Text, nullable=False),
    Column("subject", JSON, nullable=False),
    Column("refresh_token_hash", String(64), nullable=True, unique=True),
    Column("family_id", String(64), nullable=False, index=True),  # one per code exchange
    Column("code_hash", String(64), nullable=True, index=True),
    _ts("issued_at"),
    _ts("access_expires_at"),
    _ts("refresh_expires_at", nullable=True),
    _ts("revoked_at", nullable=True),
    Column("revoked_reason", String(32), nullable=True),
    # The SSO session the login ran in (its public id, ``sid``); None outside a session.
    Column("session_id", String(64), nullable=True, index=True),
)

# Single-use nonces (device-check challenges, warn tickets) shared by every gateway process
# when no Redis is configured; stored by SHA-256 digest.
gateway_nonces = Table(
    "gateway_nonces",
    metadata,
    Column("nonce_hash", String(64), primary_key=True),
    _ts("expires_at"),
    Index("ix_gateway_nonces_expires_at", "expires_at"),
)

# Server-side login transactions (OIDC login, Entra EAM) when no Redis is configured: the
# session cookie holds only the id; rows are keyed by its SHA-256 digest. Data is JSON text.
gateway_login_transactions = Table(
    "gateway_login_transactions",
    metadata,
    Column("tx_hash", String(64), primary_key=True),
    Column("data", Text, nullable=False),
    _ts("expires_at"),
    Index("ix_gateway_login_transactions_expires_at", "expires_at"),
)

# SSO sessions of the gateway (posture_gateway.sso): the cookie holds an opaque random id,
# the row is keyed by its SHA-256 digest; ``public_id`` is the ``sid`` claim (never the
# cookie value). Bound to the device the login proved.
gateway_sso_sessions = Table(
    "gateway_sso_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("public_id", String(64), nullable=False, unique=True),
    Column("user_id", String(128), nullable=False, index=True),
    Column("device_id", String(64), nullable=False, index=True),
    Column("auth_time", DateTime(timezone=True), nullable=False),
    Column("acr", String(255), nullable=False),
    Column("amr", JSON, nullable=False),
    Column("data", JSON, nullable=False),  # who: username, email, name, source
    _ts("created_at"),
    _ts("last_seen_at"),
    _ts("idle_expires_at"),
    _ts("absolute_expires_at"),
    _ts("revoked_at", nullable=True),
    Column("revoked_reason", String(32), nullable=True),
)
