"""gateway tables: OIDC codes and tokens, single-use nonces, login transactions

The OpenID provider's tables (declared on their own ``MetaData`` in
``posture_gateway/oidc/tables.py``: the core does not know about OIDC) are created here,
in the one migration chain, instead of by ``create_all`` at start. A database where an
earlier gateway already created them with ``create_all`` keeps them: a table that
exists is left alone.

Revision ID: 0006_frontends
Revises: 0005
Create Date: 2026-12-01 12:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_frontends"
down_revision = "0005"
branch_labels = None
depends_on = None


def _missing(name: str) -> bool:
    return not sa.inspect(op.get_bind()).has_table(name)


def upgrade() -> None:
    if _missing("gateway_login_transactions"):
        op.create_table(
            "gateway_login_transactions",
            sa.Column("tx_hash", sa.String(length=64), nullable=False),
            sa.Column("data", sa.Text(), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("tx_hash", name=op.f("pk_gateway_login_transactions")),
        )
        with op.batch_alter_table("gateway_login_transactions", schema=None) as batch_op:
            batch_op.create_index(
                "ix_gateway_login_transactions_expires_at", ["expires_at"], unique=False
            )
    if _missing("gateway_nonces"):
        op.create_table(
            "gateway_nonces",
            sa.Column("nonce_hash", sa.String(length=64), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("nonce_hash", name=op.f("pk_gateway_nonces")),
        )
        with op.batch_alter_table("gateway_nonces", schema=None) as batch_op:
            batch_op.create_index("ix_gateway_nonces_expires_at", ["expires_at"], unique=False)
    if _missing("oidc_codes"):
        op.create_table(
            "oidc_codes",
            sa.Column("code_hash", sa.String(length=64), nullable=False),
            sa.Column("client_id", sa.String(length=128), nullable=False),
            sa.Column("user_id", sa.String(length=128), nullable=False),
            sa.Column("redirect_uri", sa.Text(), nullable=False),
            sa.Column("scope", sa.Text(), nullable=False),
            sa.Column("nonce", sa.String(length=255), nullable=True),
            sa.Column("code_challenge", sa.String(length=128), nullable=False),
            sa.Column("code_challenge_method", sa.String(length=8), nullable=False),
            sa.Column("subject", sa.JSON(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
            sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_oidc_codes")),
        )
        with op.batch_alter_table("oidc_codes", schema=None) as batch_op:
            batch_op.create_index(
                "ix_oidc_codes_client_nonce", ["client_id", "nonce"], unique=False
            )
    if _missing("oidc_tokens"):
        op.create_table(
            "oidc_tokens",
            sa.Column("id", sa.String(length=64), nullable=False),
            sa.Column("client_id", sa.String(length=128), nullable=False),
            sa.Column("user_id", sa.String(length=128), nullable=False),
            sa.Column("device_id", sa.String(length=64), nullable=True),
            sa.Column("scope", sa.Text(), nullable=False),
            sa.Column("subject", sa.JSON(), nullable=False),
            sa.Column("refresh_token_hash", sa.String(length=64), nullable=True),
            sa.Column("family_id", sa.String(length=64), nullable=False),
            sa.Column("code_hash", sa.String(length=64), nullable=True),
            sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("access_expires_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("refresh_expires_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("revoked_reason", sa.String(length=32), nullable=True),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_oidc_tokens")),
            sa.UniqueConstraint(
                "refresh_token_hash", name=op.f("uq_oidc_tokens_refresh_token_hash")
            ),
        )
        with op.batch_alter_table("oidc_tokens", schema=None) as batch_op:
            for column in ("code_hash", "device_id", "family_id", "user_id"):
                batch_op.create_index(f"ix_oidc_tokens_{column}", [column], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("oidc_tokens", schema=None) as batch_op:
        for column in ("user_id", "family_id", "device_id", "code_hash"):
            batch_op.drop_index(f"ix_oidc_tokens_{column}")
    op.drop_table("oidc_tokens")
    with op.batch_alter_table("oidc_codes", schema=None) as batch_op:
        batch_op.drop_index("ix_oidc_codes_client_nonce")
    op.drop_table("oidc_codes")
    with op.batch_alter_table("gateway_nonces", schema=None) as batch_op:
        batch_op.drop_index("ix_gateway_nonces_expires_at")
    op.drop_table("gateway_nonces")
    with op.batch_alter_table("gateway_login_transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_gateway_login_transactions_expires_at")
    op.drop_table("gateway_login_transactions")
