"""Benchmark: LDAP sync of 50,000 users and 5,000 nested groups from a private slapd.

A private slapd (tests/slapd.py: temporary directory, ephemeral ports, StartTLS with a
throwaway CA) is bulk-loaded with ``slapadd`` with a generated AD-like directory
(tests/helpers/ldap_data.py: binary objectGUID, userAccountControl, uSNChanged; groups nested
four deep plus a cycle, every 10th user disabled, DNs that need escaping). Then, in one run:

1. **bare read**: a bare ``ldap3`` paged read (same TLS session kind, page size and attributes)
   of every user and group, doing nothing with them: the floor any sync pays;
2. **initial import**: the first full sync into an empty mirror (SQLite in a temp dir, or
   ``--database-url``);
3. **full sync**: the periodic full sync against the populated mirror (what the schedule runs
   daily; it reads everything, diffs, detects deletions, writes only what changed);
4. **incremental**: 100 changes (40 display-name edits, 30 disables, 30 membership moves),
   then an incremental sync.

Targets (issue 11): full sync <= 15 s and <= 2x the bare read; incremental of 100 changes
<= 2 s. The initial import is reported against the same 15 s.

Run: ``make bench-ldap`` (or ``.venv/bin/python bench/bench_ldap.py [--users N --groups N]``).
Prints the figures, then one JSON line: ``{"bench", "metrics", "targets", "met"}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ldap3  # noqa: E402

from idp_connectors.ldap import LdapSettings, LdapSync  # noqa: E402
from idp_connectors.ldap.client import connect  # noqa: E402
from idp_connectors.ldap.schema import resolve  # noqa: E402
from mdm_core.storage.sql.database import Database  # noqa: E402
from mdm_core.storage.sql.uow import SqlStorage  # noqa: E402
from tests.helpers.ldap_data import DirectoryData, Writer  # noqa: E402
from tests.slapd import AD_BASE, ADMIN_PASSWORD, PrivateSlapd  # noqa: E402

PAGE = 1000


def _settings(server: PrivateSlapd, data: DirectoryData) -> LdapSettings:
    return LdapSettings.model_validate(
        {
            "url": server.url,
            "schema": data.flavor,
            "base_dn": data.base,
            "bind_dn": f"cn=admin,{data.suffix}",
            "bind_password": ADMIN_PASSWORD,
            "ca_file": server.ca_file,
            "page_size": PAGE,
        }
    )


def bare_read(settings: LdapSettings) -> tuple[float, int]:
    """Every user and group, paged, nothing done with them."""
    schema = resolve(settings)
    started = time.perf_counter()
    count = 0
    with connect(settings) as session:
        conn = session.conn
        for flt, attrs in (
            (schema.group_filter, schema.group_attributes()),
            (schema.user_filter, schema.user_attributes()),
        ):
            cookie = None
            while True:
                conn.search(
                    settings.base_dn,
                    flt,
                    search_scope=ldap3.SUBTREE,
                    attributes=attrs,
                    paged_size=PAGE,
                    paged_cookie=cookie,
                )
                count += sum(1 for r in conn.response if r["type"] == "searchResEntry")
                try:
                    cookie = conn.result["controls"]["1.2.840.113556.1.4.319"]["value"]["cookie"]
                except KeyError:
                    cookie = None
                if not cookie:
                    break
    return time.perf_counter() - started, count


def make_changes(server: PrivateSlapd, data: DirectoryData) -> int:
    writer = Writer(server.url, data)
    changes = 0
    try:
        people = [p for p in data.people if not p.disabled]
        for person in people[100:140]:
            writer.modify(person.dn, {"displayName": [(ldap3.MODIFY_REPLACE, ["Renamed"])]})
            changes += 1
        for person in people[200:230]:
            writer.set_disabled(person, True)
            changes += 1
        for person in people[300:330]:
            target = data.teams[(data.people.index(person) + 7) % len(data.teams)]
            writer.add_member(target, person.dn)
            changes += 1
    finally:
        writer.close()
    return changes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--groups", type=int, default=5_000)
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    args = parser.parse_args()

    data = DirectoryData("ad", "bench", users=args.users, groups=args.groups)
    started = time.perf_counter()
    server = PrivateSlapd().start({AD_BASE: data.ldif()})
    load_s = time.perf_counter() - started
    print(f"slapadd + start: {args.users} users, {args.groups} groups in {load_s:.1f}s")
    try:
        settings = _settings(server, data)
        cpu = time.process_time()
        read_s, entries = bare_read(settings)
        read_cpu = time.process_time() - cpu
        print(f"bare ldap3 paged read: {entries} entries in {read_s:.2f}s (CPU {read_cpu:.2f}s)")
        url = args.database_url or f"sqlite:///{tempfile.mkdtemp(prefix='bench-ldap-')}/m.sqlite3"
        database = Database(url)
        database.migrate()
        storage = SqlStorage(database)
        last = [time.perf_counter()]

        def progress(phase: str, advance: int, total: int | None) -> None:
            if phase == "write" and total and time.perf_counter() - last[0] > 10:
                last[0] = time.perf_counter()
                print(f"  ... writing ({total} users to write)", file=sys.stderr)

        sync = LdapSync(settings, storage, progress=progress)
        cpu = time.process_time()
        initial = sync.run(full=True)
        initial_cpu = time.process_time() - cpu
        print(
            f"initial import (empty mirror): {initial.counts()} in {initial.seconds:.1f}s "
            f"(CPU {initial_cpu:.2f}s)"
        )
        cpu = time.process_time()
        full = sync.run(full=True)
        full_cpu = time.process_time() - cpu
        print(
            f"periodic full sync (populated mirror): {full.counts()} in {full.seconds:.2f}s "
            f"(CPU {full_cpu:.2f}s)"
        )
        changes = make_changes(server, data)
        incremental = sync.run()
        print(
            f"incremental after {changes} changes: {incremental.counts()} in "
            f"{incremental.seconds:.2f}s"
        )
        database.dispose()
    finally:
        server.stop()
    metrics = {
        "users": args.users,
        "groups": args.groups,
        "bare_read_s": round(read_s, 3),
        "initial_import_s": round(initial.seconds, 3),
        "full_sync_s": round(full.seconds, 3),
        "full_sync_vs_bare_read": round(full.seconds / read_s, 2),
        "incremental_changes": changes,
        "incremental_s": round(incremental.seconds, 3),
        "incremental_changed": len(incremental.changed),
        # this process's CPU seconds (the sync's own work; slapd's is not in them): less
        # sensitive to a loaded machine than the wall times
        "bare_read_cpu_s": round(read_cpu, 3),
        "initial_import_cpu_s": round(initial_cpu, 3),
        "full_sync_cpu_s": round(full_cpu, 3),
        "full_sync_vs_bare_read_cpu": round(full_cpu / read_cpu, 2),
    }
    targets = {
        "full_sync_s": 15.0,
        "full_sync_vs_bare_read": 2.0,
        "incremental_s": 2.0,
        "initial_import_s": 15.0,
    }
    met = all(metrics[k] <= v for k, v in targets.items())  # type: ignore[operator]
    print(json.dumps({"bench": "ldap_sync", "metrics": metrics, "targets": targets, "met": met}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
