"""Benchmark: SCIM user PATCHes per second over HTTP on the real server, on PostgreSQL.

What one PATCH costs the server: authenticate the client's bearer token (SHA-256, constant
time), count it against the client's rate limit (the shared SQL limiter), parse the body
(bounded JSON), read the SCIM record and its group memberships, apply the operation, validate
the result against the schema, and in one unit of work write the mirror user, the SCIM record
(optimistic version check) and the audit record.

Server: ``posture serve`` (the production entry point: granian, 2 workers, 8 threads) on a
private PostgreSQL (or ``POSTURE_BENCH_DATABASE_URL``), with one SCIM client configured.
Users are created beforehand through ``POST /scim/v2/Users``. Load: ``wrk`` with
``bench/scim_patch.lua`` (closed loop, ``-c`` connections), every request a real change
(``replace title`` with a new value) to a user no other connection is writing.

Target: >= 200 user PATCHes/s with no failed request. Prints one JSON line
``{"bench": "scim_user_patch", "metrics": {...}, "targets": {...}, "met": ...}``.
Run: ``make bench-scim`` (``--help`` for options); ``--record`` appends a section to
docs/performance.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform as pyplatform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import _harness as h  # noqa: E402
import httpx  # noqa: E402
import yaml  # noqa: E402

from tests.services import PrivatePostgres, PrivateRedis, free_port  # noqa: E402

TARGET_RATE = 200.0
LUA = BENCH / "scim_patch.lua"
VENV_BIN = Path(sys.executable).parent
TOKEN = "bench-scim-" + "b" * 40
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
_WRK = re.compile(r"WRK_RESULT (.*)")


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Until ``/readyz`` answers 200 (raises when the server exits or is not ready in time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server at {url} not ready in {timeout}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group (granian's workers too), then wait."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    stop(proc)
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return
    time.sleep(2)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def server_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by every process of the server's group."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 of stat: the process group
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def create_users(url: str, count: int) -> list[str]:
    ids: list[str] = []
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"}
    with httpx.Client(base_url=url + "/scim/v2", headers=headers, timeout=30) as http:
        for i in range(count):
            body = {
                "schemas": [USER],
                "userName": f"bench-user-{i}@example.com",
                "name": {"givenName": "Bench", "familyName": f"User {i}"},
                "emails": [
                    {"value": f"bench-user-{i}@example.com", "type": "work", "primary": True}
                ],
                "active": True,
            }
            r = http.post("/Users", json=body)
            r.raise_for_status()
            ids.append(r.json()["id"])
        # one PATCH checked by hand: the request the load repeats is accepted
        r = http.patch(
            f"/Users/{ids[0]}",
            json={
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "title", "value": "check"}],
            },
        )
        r.raise_for_status()
        assert r.json()["title"] == "check" and r.headers["ETag"] == 'W/"2"'
    return ids


def run_wrk(url: str, ids_file: Path, duration: int, threads: int, conns: int) -> dict[str, int]:
    cmd = [shutil.which("wrk") or "wrk", "-t", str(threads), "-c", str(conns), "-d", f"{duration}s",
           "--latency", "-s", str(LUA), url, "--", str(ids_file), str(threads), TOKEN]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    match = _WRK.search(done.stdout)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{done.stdout}\n{done.stderr}")
    return {k: int(v) for k, v in (kv.split("=") for kv in match.group(1).split())}


def versions_written(url: str, ids: list[str]) -> int:
    """Sum of (version - 1) over the users: the PATCHes the server really applied."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    total = 0
    with httpx.Client(base_url=url + "/scim/v2", headers=headers, timeout=30) as http:
        for rid in ids:
            version = http.get(f"/Users/{rid}").json()["meta"]["version"]
            total += int(version[3:-1]) - 1
    return total


def markdown(result: dict[str, Any], args: argparse.Namespace, pg_version: str) -> str:
    m = result["metrics"]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            "",
            f"## SCIM user PATCHes over HTTP ({when})",
            "",
            "`make bench-scim` (bench/bench_scim.py): `PATCH /scim/v2/Users/{id}` (`replace "
            "title`, a real change each time) through `posture serve` (granian, "
            f"{args.workers} workers, {args.threads} threads) on PostgreSQL {pg_version}, "
            f"{args.users} users, wrk {args.wrk_threads} threads / {args.connections} "
            f"connections for {args.duration} s. Machine: {pyplatform.machine()}, "
            f"{os.cpu_count()} CPUs (shared), load average {args.load_before:.1f} before the run.",
            "",
            "| metric | value | target |",
            "|---|---|---|",
            f"| user PATCHes/s | {m['patches_per_s']:.0f} | >= {TARGET_RATE:.0f} |",
            f"| p50 / p90 / p99 latency | {m['p50_ms']:.1f} / {m['p90_ms']:.1f} / "
            f"{m['p99_ms']:.1f} ms | |",
            f"| failed requests (non-2xx, errors) | {m['failed']} | 0 |",
            f"| server CPU per PATCH (granian processes) | {m['server_cpu_ms_per_patch']:.2f} ms "
            f"| |",
            f"| rate those CPU ms allow on {os.cpu_count()} idle cores | "
            f"{m['cpu_bound_patches_per_s']} /s | |",
            f"| versions written / requests answered | {m['versions_written']} / {m['requests']} "
            f"| equal, + at most the {args.connections} in flight |",
            "",
            "Each PATCH authenticates the client (SHA-256 + constant-time compare), counts the "
            "client's rate limit in the shared SQL limiter, and writes the SCIM record "
            "(optimistic version check) and the audit record in one transaction (a `title` "
            "change leaves the mirror's fields alone, so the mirror row is not rewritten). "
            "The machine is shared: the load average says how much of it the run had. "
            f"Met: **{result['met']}**.",
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--record", action="store_true", help="append to docs/performance.md")
    parser.add_argument(
        "--redis",
        action="store_true",
        help="with a private Redis (redis_url set: the Redis rate limiter, replay store, bus)",
    )
    args = parser.parse_args()
    args.load_before = os.getloadavg()[0]
    if shutil.which("wrk") is None:
        print("wrk not found: run `make system-deps` (apt-get install wrk)", file=sys.stderr)
        return 2
    pg: PrivatePostgres | None = None
    rd: PrivateRedis | None = None
    redis_url: str | None = None
    if args.redis:
        rd = PrivateRedis()
        redis_url = rd.start()
    server_url = os.environ.get("POSTURE_BENCH_DATABASE_URL")
    if not server_url:
        pg = PrivatePostgres()
        server_url = pg.start()
    workdir = Path(tempfile.mkdtemp(prefix="posture-bench-scim-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        db_url = h.fresh_database(server_url)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        config = workdir / "config.yaml"
        digest = hashlib.sha256(TOKEN.encode()).hexdigest()
        config.write_text(
            yaml.safe_dump({"scim": {"clients": [{"id": "bench", "token_sha256": digest}]}})
        )
        env = h.server_env(db_url, workdir / "data", url, redis_url)
        env["POSTURE_CONFIG"] = str(config)
        env["PYTHONPATH"] = str(ROOT)
        cmd = [str(VENV_BIN / "posture"), "serve", "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(args.workers), "--threads", str(args.threads)]  # fmt: skip
        # its own session: the server's worker processes are stopped with it (stop_server)
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True)
        wait_ready(url, proc)
        print(f"creating {args.users} users ...", flush=True)
        ids = create_users(url, args.users)
        ids_file = workdir / "ids.txt"
        ids_file.write_text("\n".join(ids) + "\n")
        base = versions_written(url, ids)
        print(f"PATCH load: {args.duration} s ...", flush=True)
        cpu0 = server_cpu_s(proc.pid)
        t0 = time.perf_counter()
        wrk = run_wrk(url, ids_file, args.duration, args.wrk_threads, args.connections)
        elapsed = time.perf_counter() - t0
        cpu_ms = (server_cpu_s(proc.pid) - cpu0) * 1000 / max(1, wrk["requests"])
        written = versions_written(url, ids) - base
        from sqlalchemy import create_engine, text

        engine = create_engine(db_url)
        with engine.connect() as conn:
            pg_version = str(conn.execute(text("SHOW server_version")).scalar()).split()[0]
        engine.dispose()
        failed = wrk["non2xx"] + wrk["connect_errors"] + wrk["read_errors"] + wrk["timeouts"]
        rate = wrk["requests"] / (wrk["duration_us"] / 1e6)
        metrics = {
            "patches_per_s": round(rate, 1),
            "requests": wrk["requests"],
            "failed": failed,
            "versions_written": written,
            "p50_ms": wrk["p50_us"] / 1000,
            "p90_ms": wrk["p90_us"] / 1000,
            "p99_ms": wrk["p99_us"] / 1000,
            "wall_s": round(elapsed, 1),
            # server CPU per PATCH (all its processes; PostgreSQL and wrk not included) and
            # the rate that leaves for the machine's cores if the server had them to itself
            "server_cpu_ms_per_patch": round(cpu_ms, 2),
            "cpu_bound_patches_per_s": round((os.cpu_count() or 1) * 1000 / max(cpu_ms, 1e-6)),
            "redis": redis_url is not None,
        }
        # wrk counts the requests answered in the window; up to one per connection was still
        # in flight when it stopped (written by the server, not counted by wrk)
        consistent = wrk["requests"] <= written <= wrk["requests"] + args.connections
        metrics["versions_consistent"] = consistent
        met = rate >= TARGET_RATE and failed == 0 and consistent
        result = {
            "bench": "scim_user_patch",
            "metrics": metrics,
            "targets": {"patches_per_s": TARGET_RATE, "failed": 0},
            "met": met,
        }
        section = markdown(result, args, pg_version)
        print(section)
        if args.record:
            path = ROOT / "docs" / "performance.md"
            with path.open("a", encoding="utf-8") as fh:
                fh.write(section)
            print("recorded in docs/performance.md")
        print(json.dumps(result))
        return 0 if met else 1
    finally:
        if proc is not None:
            stop_server(proc)
        shutil.rmtree(workdir, ignore_errors=True)
        if pg is not None:
            pg.stop()
        if rd is not None:
            rd.stop()


if __name__ == "__main__":
    sys.exit(main())
