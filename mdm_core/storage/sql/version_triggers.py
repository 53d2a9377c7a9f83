"""Database triggers that bump ``read_model_versions`` rows in the writer's own transaction.

The read model (:mod:`mdm_core.read_model`) caches what a decision reads and checks, per
decision, one version row per cached entity. The versions are bumped by triggers, not by the
services, so no write path can forget: every INSERT, UPDATE or DELETE of a watched table
increments the entity's row in the same transaction (committed with the change or not at all).

A watch names the table, the key prefix and the column that completes the key
(``device:`` + ``devices.id``), or no column for one key per table group (``directory``).
Both dialects: SQLite (one trigger per event, ``INSERT .. ON CONFLICT DO UPDATE``) and
PostgreSQL (one row-level trigger calling ``read_model_bump(prefix, column)``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "VersionWatch",
    "CORE_WATCHES",
    "CERTIFICATE_WATCHES",
    "create_statements",
    "drop_statements",
    "ensure_statements",
    "PG_FUNCTION",
]


@dataclass(frozen=True, slots=True)
class VersionWatch:
    """Writes to ``table`` bump key ``prefix + row[column]`` (``prefix`` alone without column)."""

    table: str
    prefix: str
    column: str | None = None
    events: tuple[str, ...] = ("INSERT", "UPDATE", "DELETE")

    @property
    def name(self) -> str:
        return f"rmv_{self.table}"


#: The MDM core tables a decision reads: the device (record, status, posture, rule state) and
#: the directory (users, groups, memberships, identity links).
CORE_WATCHES: tuple[VersionWatch, ...] = (
    VersionWatch("devices", "device:", "id"),
    VersionWatch("posture_latest", "device:", "device_id"),
    VersionWatch("rule_failures", "device:", "device_id"),
    VersionWatch("directory_users", "directory"),
    VersionWatch("directory_groups", "directory"),
    VersionWatch("directory_memberships", "directory"),
    VersionWatch("identity_links", "directory"),
)

#: A device's certificates (issue, renewal, revocation) bump ``device:<id>`` too: the login
#: proof's device identity (key, current certificate's validity and revocation) is cached
#: under it. Created by migration 0007_perf_decision_certs.
CERTIFICATE_WATCHES: tuple[VersionWatch, ...] = (
    VersionWatch("certificates", "device:", "device_id"),
)

#: The gateway's issued tokens (``oidc_tokens``, created by migration 0006_frontends): a
#: revocation, rotation or removal bumps ``tokens`` (cached verified bearer tokens).
GATEWAY_WATCHES: tuple[VersionWatch, ...] = (
    VersionWatch("oidc_tokens", "tokens", None, ("UPDATE", "DELETE")),
)

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION read_model_bump() RETURNS trigger AS $$
DECLARE
    rec jsonb;
    k text;
BEGIN
    IF TG_OP = 'DELETE' THEN rec := to_jsonb(OLD); ELSE rec := to_jsonb(NEW); END IF;
    IF TG_NARGS > 1 THEN k := TG_ARGV[0] || (rec ->> TG_ARGV[1]); ELSE k := TG_ARGV[0]; END IF;
    INSERT INTO read_model_versions (key, version) VALUES (k, 1)
        ON CONFLICT (key) DO UPDATE SET version = read_model_versions.version + 1;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""


def _quote(value: str) -> str:
    if "'" in value or "\\" in value:
        raise ValueError(f"refusing a trigger literal with quotes: {value!r}")
    return f"'{value}'"


def create_statements(dialect: str, watches: tuple[VersionWatch, ...]) -> list[str]:
    """The DDL installing ``watches`` (idempotent: existing triggers are replaced)."""
    out: list[str] = []
    if dialect == "postgresql":
        out.append(PG_FUNCTION)
        for w in watches:
            args = _quote(w.prefix) + (f", {_quote(w.column)}" if w.column else "")
            out.append(f"DROP TRIGGER IF EXISTS {w.name} ON {w.table}")
            out.append(
                f"CREATE TRIGGER {w.name} AFTER {' OR '.join(w.events)} ON {w.table} "
                f"FOR EACH ROW EXECUTE FUNCTION read_model_bump({args})"
            )
        return out
    if dialect != "sqlite":
        raise ValueError(f"no version triggers for dialect {dialect}")
    for w in watches:
        for ev in w.events:
            row = "OLD" if ev == "DELETE" else "NEW"
            key = _quote(w.prefix) + (f" || {row}.{w.column}" if w.column else "")
            name = f"{w.name}_{ev.lower()}"
            out.append(f"DROP TRIGGER IF EXISTS {name}")
            out.append(
                f"CREATE TRIGGER {name} AFTER {ev} ON {w.table} BEGIN "
                f"INSERT INTO read_model_versions (key, version) VALUES ({key}, 1) "
                "ON CONFLICT (key) DO UPDATE SET version = version + 1; END"
            )
    return out


def drop_statements(dialect: str, watches: tuple[VersionWatch, ...]) -> list[str]:
    """The DDL removing ``watches`` (the function stays on PostgreSQL for other watches)."""
    if dialect == "postgresql":
        return [f"DROP TRIGGER IF EXISTS {w.name} ON {w.table}" for w in watches]
    return [f"DROP TRIGGER IF EXISTS {w.name}_{ev.lower()}" for w in watches for ev in w.events]


def ensure_statements(dialect: str, watches: tuple[VersionWatch, ...]) -> list[str]:
    """The DDL installing ``watches`` only where missing (safe to run at every start by
    several processes; the function comes from migration ``0006_readmodel``)."""
    if dialect == "sqlite":
        return [
            s.replace("CREATE TRIGGER", "CREATE TRIGGER IF NOT EXISTS", 1)
            for s in create_statements(dialect, watches)
            if s.startswith("CREATE TRIGGER")
        ]
    out: list[str] = []
    for w in watches:
        create = next(s for s in create_statements(dialect, (w,)) if s.startswith("CREATE TRIGGER"))
        out.append(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = "
            f"{_quote(w.name)} AND tgrelid = {_quote(w.table)}::regclass) THEN {create}; "
            "END IF; END $$"
        )
    return out
