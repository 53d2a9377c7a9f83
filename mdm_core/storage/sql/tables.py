"""The relational schema of the MDM core (SQLAlchemy Core tables, one ``MetaData``).

Alembic migrations under ``migrations/`` are generated from this module; a test checks the
two agree. Timestamps are stored as timezone-aware UTC. Secrets (enrollment tokens) are
stored only as SHA-256 digests.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)

__all__ = ["metadata"]

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)


def _ts(name: str, nullable: bool = False) -> Column[object]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


# --- devices and identity -------------------------------------------------------------------

devices = Table(
    "devices",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", String(128), nullable=False, index=True),
    Column("platform", String(16), nullable=False),
    Column("ownership", String(16), nullable=False),
    Column("serial_number", String(128), nullable=True, index=True),
    # active | quarantined | pending_verification | retired | wiped
    # (mdm_core.domain.model.DeviceStatus)
    Column("status", String(24), nullable=False),
    Column("status_reason", Text, nullable=True),
    Column("cert_serial", String(64), nullable=True),
    # DER SubjectPublicKeyInfo of the enrolled device key (P-256)
    Column("public_key", LargeBinary, nullable=True),
    Column("key_thumbprint", String(64), nullable=True),  # RFC 7638 JWK thumbprint
    Column("enrollment_generation", Integer, nullable=False, default=1),
    _ts("enrolled_at"),
    _ts("updated_at"),
    _ts("last_checkin_at", nullable=True),
)

certificates = Table(
    "certificates",
    metadata,
    Column("serial", String(64), primary_key=True),  # hex
    Column("device_id", String(64), ForeignKey("devices.id"), nullable=False, index=True),
    Column("user_id", String(128), nullable=False),
    Column("key_thumbprint", String(64), nullable=False),
    _ts("not_before"),
    _ts("not_after"),
    _ts("revoked_at", nullable=True),
    Column("revocation_reason", String(64), nullable=True),
    Column("pem", Text, nullable=False),
)

ca_keys = Table(
    "ca_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    # PKCS#8 encrypted with the configured passphrase (BestAvailableEncryption)
    Column("encrypted_key_pem", Text, nullable=False),
    Column("certificate_pem", Text, nullable=False),
    _ts("created_at"),
)

enrollment_tokens = Table(
    "enrollment_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # sha256 hex; the token is never kept
    Column("user_id", String(128), nullable=False, index=True),
    Column("ownership", String(16), nullable=False),
    Column("platform", String(16), nullable=True),
    Column("created_by", String(128), nullable=False),
    _ts("created_at"),
    _ts("expires_at"),
    _ts("used_at", nullable=True),
    Column("used_by_device", String(64), nullable=True),
)

registered_serials = Table(
    "registered_serials",
    metadata,
    Column("serial_number", String(128), primary_key=True),
    Column("platform", String(16), nullable=False),
    Column("user_id", String(128), nullable=True),
    Column("registered_by", String(128), nullable=False),
    _ts("registered_at"),
    Column("device_id", String(64), nullable=True),
    # SHA-256 hex of the per-device enrollment secret (shown once at registration); NULL: no
    # secret (registered before secrets existed): the serial cannot enroll until re-registered.
    Column("secret_hash", String(64), nullable=True),
)

used_proofs = Table(
    "used_proofs",
    metadata,
    Column("jti", String(128), primary_key=True),
    _ts("expires_at"),
    Index("ix_used_proofs_expires_at", "expires_at"),
)

# --- posture --------------------------------------------------------------------------------

posture_latest = Table(
    "posture_latest",
    metadata,
    Column("device_id", String(64), ForeignKey("devices.id"), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    _ts("collected_at"),
    _ts("received_at"),
    Column("posture", JSON, nullable=False),
    # Which report format established each field, and when each format last reported: a
    # device with two sources (MDM channel + companion app) gets one merged posture.
    Column("sources", JSON, nullable=True),
    # The stale-posture sweep's range query (mdm_core.storage.sql.staleness).
    Index("ix_posture_latest_received_at", "received_at"),
)

# A ring of the last N reports per device: slot = seq % N, so history is bounded by
# construction (an upsert per check-in, never a trim query).
posture_history = Table(
    "posture_history",
    metadata,
    Column("device_id", String(64), ForeignKey("devices.id"), primary_key=True),
    Column("slot", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    _ts("collected_at"),
    _ts("received_at"),
    Column("posture", JSON, nullable=False),
)

compliance_state = Table(
    "compliance_state",
    metadata,
    Column("device_id", String(64), ForeignKey("devices.id"), primary_key=True),
    # compliant | noncompliant | quarantined | unknown
    Column("state", String(16), nullable=False),
    Column("outcome", String(16), nullable=False),  # allow | warn | restrict | block
    Column("reasons", JSON, nullable=False),
    Column("policy_ids", JSON, nullable=False),
    _ts("evaluated_at"),
)

# Grace timelines count from the moment a rule first failed on a device.
rule_failures = Table(
    "rule_failures",
    metadata,
    Column("device_id", String(64), ForeignKey("devices.id"), primary_key=True),
    Column("policy_id", String(128), primary_key=True),
    Column("rule_id", String(128), primary_key=True),
    _ts("first_failed_at"),
)

# --- commands -------------------------------------------------------------------------------

commands = Table(
    "commands",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("device_id", String(64), ForeignKey("devices.id"), nullable=False),
    Column("type", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("priority", Integer, nullable=False, default=0),
    # queued | delivered | acknowledged | error | not_now | cancelled
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text, nullable=True),
    Column("created_by", String(128), nullable=False),
    Column("idempotency_key", String(128), nullable=True),
    _ts("created_at"),
    _ts("updated_at"),
    _ts("delivered_at", nullable=True),
    _ts("acknowledged_at", nullable=True),
    Index("ix_commands_device_status", "device_id", "status"),
    UniqueConstraint("device_id", "idempotency_key", name="uq_commands_device_idempotency"),
)

command_transitions = Table(
    "command_transitions",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("command_id", String(64), ForeignKey("commands.id"), nullable=False, index=True),
    Column("from_status", String(16), nullable=True),
    Column("to_status", String(16), nullable=False),
    Column("detail", Text, nullable=True),
    _ts("at"),
)

# --- offboarding (mdm_core.offboarding) -----------------------------------------------------

# One durable offboarding job per user and trigger. ``open_user`` is the user id while the
# job is scheduled or running and NULL once it is done or cancelled: its unique constraint is
# what makes "one open job per user" hold under concurrent triggers.
offboarding_jobs = Table(
    "offboarding_jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", String(128), nullable=False, index=True),
    Column("open_user", String(128), nullable=True, unique=True),
    Column("username", String(256), nullable=True),
    Column("groups", JSON, nullable=False),  # the user's group names when it was requested
    Column("trigger", String(32), nullable=False),
    Column("source_ref", String(256), nullable=True),
    Column("actor", String(128), nullable=False),
    Column("reason", Text, nullable=True),
    # scheduled | running | done | cancelled (mdm_core.offboarding.model.JobStatus)
    Column("status", String(16), nullable=False),
    _ts("effective_at"),
    _ts("created_at"),
    _ts("updated_at"),
    _ts("started_at", nullable=True),
    _ts("finished_at", nullable=True),
    Index("ix_offboarding_jobs_due", "status", "effective_at"),
    UniqueConstraint("trigger", "source_ref", name="uq_offboarding_jobs_trigger_source_ref"),
)

# Per job, each of the user's devices and what was done to it.
offboarding_devices = Table(
    "offboarding_devices",
    metadata,
    Column("job_id", String(64), ForeignKey("offboarding_jobs.id"), primary_key=True),
    Column("device_id", String(64), primary_key=True),
    Column("ownership", String(16), nullable=False),
    Column("action", String(24), nullable=False),  # selective_wipe | full_wipe | lock_and_retire
    # pending | awaiting_approval | retired | wiped | failed | skipped | cancelled
    # (mdm_core.offboarding.model.DeviceState)
    Column("state", String(24), nullable=False),
    Column("command_id", String(64), nullable=True),
    Column("lock_command_id", String(64), nullable=True),
    Column("wipe_request_id", String(64), nullable=True),
    Column("detail", Text, nullable=True),
    _ts("updated_at"),
)

# Users whose logins and enrollment are blocked by offboarding, until an admin reinstates
# them. Keyed by user id, not a directory row: a later sync or a re-created account does not
# lift it. Writes bump the read model's ``directory`` version (migration 0012_offboarding).
user_blocks = Table(
    "user_blocks",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("job_id", String(64), nullable=False),
    Column("reason", Text, nullable=True),
    _ts("blocked_at"),
)

# Full-wipe requests (mdm_core.device.wipes: the two-person rule). ``open_device_id`` is the
# device id while the request is open and NULL once it is closed: its unique constraint is
# what keeps one open request per device, even between racing transactions.
wipe_requests = Table(
    "wipe_requests",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("device_id", String(64), ForeignKey("devices.id"), nullable=False, index=True),
    Column("user_id", String(128), nullable=False),
    # pending_approval | queued | rejected | cancelled (mdm_core.device.wipe_model)
    Column("status", String(24), nullable=False),
    Column("requested_by", String(128), nullable=False),
    Column("reason", Text, nullable=False),
    Column("approvals", JSON, nullable=False),  # ["admin:<name>", ...] in signing order
    Column("command_id", String(64), nullable=True),
    Column("open_device_id", String(64), nullable=True, unique=True),
    Column("closed_by", String(128), nullable=True),
    Column("close_reason", Text, nullable=True),
    _ts("created_at"),
    _ts("updated_at"),
)

# --- events and audit -----------------------------------------------------------------------

outbox = Table(
    "outbox",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("type", String(64), nullable=False),
    Column("subject", String(128), nullable=False),
    Column("payload", JSON, nullable=False),
    _ts("occurred_at"),
    _ts("published_at", nullable=True),
    Index("ix_outbox_unpublished", "published_at", "id"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    _ts("at"),
    Column("actor", String(128), nullable=False),  # "device:<id>", "admin:<name>", "system"
    Column("action", String(64), nullable=False),
    Column("subject", String(128), nullable=False),
    Column("outcome", String(32), nullable=False),  # ok | refused | error | allow | block ...
    Column("detail", JSON, nullable=False),
    Index("ix_audit_subject_at", "subject", "at"),
)

# --- directory mirror -----------------------------------------------------------------------

directory_users = Table(
    "directory_users",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("username", String(256), nullable=False, unique=True),
    Column("email", String(320), nullable=True),
    Column("display_name", String(256), nullable=True),
    Column("active", Boolean, nullable=False, default=True),
    Column("source", String(32), nullable=False),  # local | ldap | scim
    Column("external_id", String(256), nullable=True),
    _ts("updated_at"),
)
# HR webhooks find their employee by e-mail ignoring case (``find_by_email``): an index on the
# expression, so that is a lookup, not a scan of every user, per event.
Index("ix_directory_users_email_lower", func.lower(directory_users.c.email))

directory_groups = Table(
    "directory_groups",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("name", String(256), nullable=False, unique=True),
    Column("source", String(32), nullable=False),
    Column("external_id", String(256), nullable=True),
    _ts("updated_at"),
)

# (issuer, subject) of an outside identity -> our directory user (mdm_core.storage.identity_links).
# One subject per issuer per user. No foreign key: links are removed with the user.
identity_links = Table(
    "identity_links",
    metadata,
    Column("issuer", String(512), primary_key=True),
    Column("subject", String(256), primary_key=True),
    Column("user_id", String(128), nullable=False),
    _ts("linked_at"),
    Column("method", String(32), nullable=False),  # admin | email | username
    UniqueConstraint("issuer", "user_id", name="uq_identity_links_issuer_user"),
    Index("ix_identity_links_user_id", "user_id"),
)

# A member is a user or a group (nested groups); exactly one of the two is set.
directory_memberships = Table(
    "directory_memberships",
    metadata,
    Column("group_id", String(128), ForeignKey("directory_groups.id"), primary_key=True),
    Column("member_id", String(128), primary_key=True),
    Column("member_kind", String(8), primary_key=True),  # user | group
    Index("ix_directory_memberships_member", "member_kind", "member_id"),
)

# --- SCIM 2.0 resources (mdm_core.storage.sql.scim) ---------------------------------------------

# The SCIM view of a mirror user or group (idp_connectors.scim): the attributes the mirror has
# no column for, as one JSON document, plus the resource version (weak ETag) and meta times.
# ``name_key`` is the lower-cased userName (User) or displayName (Group): unique per type.
scim_resources = Table(
    "scim_resources",
    metadata,
    Column("resource_type", String(16), primary_key=True),  # User | Group
    Column("id", String(128), primary_key=True),  # = directory_users.id / directory_groups.id
    Column("client", String(64), nullable=False),  # the SCIM client that owns it
    Column("name_key", String(256), nullable=False),
    Column("external_id", String(256), nullable=True),
    Column("version", BigInteger, nullable=False),
    _ts("created"),
    _ts("last_modified"),
    Column("document", JSON, nullable=False),
    UniqueConstraint("resource_type", "name_key", name="uq_scim_resources_type_name"),
    Index("ix_scim_resources_client", "resource_type", "client"),
)

# What each directory source last said about a user (mdm_core.storage.directory_claims): the
# per-attribute source of truth resolves the mirror record from these.
directory_source_claims = Table(
    "directory_source_claims",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("source", String(32), primary_key=True),
    Column("claims", JSON, nullable=False),
    _ts("updated_at"),
    Index("ix_directory_source_claims_source", "source"),
)

# --- read model versions (mdm_core.read_model) ------------------------------------------------

# One row per cached entity ("device:<id>", "directory", "tokens"): bumped by database triggers
# (migration 0006_readmodel) in the transaction of every write to the rows the entity is read
# from, so a decision compares its cached copy's version in one SELECT.
read_model_versions = Table(
    "read_model_versions",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("version", BigInteger, nullable=False),
)

# --- shared rate limits (mdm_core.ratelimit.sql) -----------------------------------------------

# One row per (window, key): the sliding-window counts of the current and previous windows.
rate_limits = Table(
    "rate_limits",
    metadata,
    Column("window_ms", BigInteger, primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("window_index", BigInteger, nullable=False),
    Column("current", BigInteger, nullable=False),
    Column("previous", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False, index=True),
)

# --- directory sources: entry keys, cursors, leases (mdm_core.storage.sync_state) ---------------

# Each entry a directory source (LDAP) delivered: its stable id in the mirror and its current
# key there (an LDAP DN), so a later incremental sync can resolve member DNs to ids.
directory_source_entries = Table(
    "directory_source_entries",
    metadata,
    Column("source", String(32), primary_key=True),
    Column("entry_id", String(128), primary_key=True),
    Column("kind", String(8), nullable=False),  # user | group
    Column("entry_key", Text, nullable=False),  # the DN, normalised to lower case
)

# One row per directory source: its incremental cursor (highest uSNChanged / modifyTimestamp
# seen) and when its last full sync completed.
directory_sync_state = Table(
    "directory_sync_state",
    metadata,
    Column("source", String(32), primary_key=True),
    Column("cursor", String(64), nullable=True),
    _ts("last_full_at", nullable=True),
    _ts("updated_at"),
)

# Named leases: the one process holding an unexpired lease runs the named job (the scheduled
# directory sync runs in exactly one process of a multi-worker server).
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(128), nullable=False),
    _ts("expires_at"),
)
