"""gateway SSO sessions, and the session each OIDC token was issued in

``gateway_sso_sessions`` holds the gateway's single sign-on sessions (``posture_gateway.sso``:
keyed by the SHA-256 digest of the cookie's random id, bound to a device, with idle and
absolute expiry and revocation); ``oidc_tokens.session_id`` links a token to the session its
login ran in (the ``sid`` claim), so logout and revocation can find them.

Revision ID: 0008_sso_sessions
Revises: 0007_perf_decision_certs
Create Date: 2026-12-01 19:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_sso_sessions"
down_revision = "0007_perf_decision_certs"
branch_labels = None
depends_on = None


def _missing(name: str) -> bool:
    return not sa.inspect(op.get_bind()).has_table(name)


def _has_column(table: str, column: str) -> bool:
    return any(c["name"] == column for c in sa.inspect(op.get_bind()).get_columns(table))


def upgrade() -> None:
    # A database whose gateway tables an earlier release made with ``create_all`` (see
    # 0006_frontends) may already have them: what exists is left alone.
    if not _missing("gateway_sso_sessions"):
        _link_tokens()
        return
    op.create_table(
        "gateway_sso_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("public_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("auth_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acr", sa.String(length=255), nullable=False),
        sa.Column("amr", sa.JSON(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("idle_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("absolute_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_gateway_sso_sessions")),
        sa.UniqueConstraint("public_id", name=op.f("uq_gateway_sso_sessions_public_id")),
    )
    with op.batch_alter_table("gateway_sso_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_gateway_sso_sessions_user_id", ["user_id"], unique=False)
        batch_op.create_index("ix_gateway_sso_sessions_device_id", ["device_id"], unique=False)
    _link_tokens()


def _link_tokens() -> None:
    if _has_column("oidc_tokens", "session_id"):
        return
    with op.batch_alter_table("oidc_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_id", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_oidc_tokens_session_id", ["session_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("oidc_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_oidc_tokens_session_id")
        batch_op.drop_column("session_id")
    with op.batch_alter_table("gateway_sso_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_gateway_sso_sessions_device_id")
        batch_op.drop_index("ix_gateway_sso_sessions_user_id")
    op.drop_table("gateway_sso_sessions")
