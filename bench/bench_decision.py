"""Benchmark: the posture decision API (``POST /api/v1/decision``) over HTTP, on PostgreSQL.

What one decision costs the server: verify the caller's bearer token (client-credentials
grant, JWT + grant store), resolve the user in the directory mirror, spend the proof's nonce
in the gateway's nonce store, verify the device login proof (ES256, audience, nonce, replay
record), read the user's groups, the device's latest posture and rule failures, evaluate the
policy set, and write the audit record.

Side by side in one run, on the same server processes: ``POST /bench/bare-verify``
(``bench/decision_wsgi.py``), which parses the same body and verifies the same proof with
pyjwt ES256 and nothing else: the crypto floor.

Servers: gunicorn (2 sync workers) and granian (WSGI, 2 workers), one after the other.
Load: ``wrk`` with ``bench/decision.lua`` replaying PRE-BUILT requests: each carries a device
login proof signed just before the run for its own nonce, issued beforehand into the
gateway's nonce store (``SqlNonceStore.issue``), so every request is a real, single-use,
accepted proof; the bearer token comes from ``/oauth/token`` (client credentials). Closed
loop (``-c`` connections) for the maximum rate and its latency; then a fixed 500/s open-loop
load from an asyncio generator in this process (raw sockets, requests encoded beforehand;
request i is due at t0 + i/rate and its latency counts from then, so a stalled server is not
hidden by coordinated omission).

Targets: >= 2,000 decisions/s, p99 < 10 ms at 500/s, >= 0.8x the bare endpoint's rate.
Run: ``make bench-decision`` (``--help`` for options). ``--record`` appends to
docs/performance.md. PostgreSQL: ``POSTURE_BENCH_DATABASE_URL`` or a private instance.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import os
import platform as pyplatform
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import httpx  # noqa: E402
from bench_checkin import (  # noqa: E402
    Device,
    build_app,
    enroll_fleet,
    fresh_database,
    pct,
    server_env,
    stop,
    wait_ready,
)
from cryptography.hazmat.primitives import serialization  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402

from mdm_core.storage.sql.tables import audit_log  # noqa: E402
from posture_gateway.oidc.passwords import hash_client_secret  # noqa: E402
from tests.services import PrivatePostgres, free_port  # noqa: E402

TARGET_RATE = 2000.0
TARGET_P99_FIXED_MS = 10.0
TARGET_RATIO = 0.8
VENV_BIN = Path(sys.executable).parent
LUA = BENCH / "decision.lua"
CALLER = "bench-idp"
CALLER_SECRET = "bench-caller-secret-" + "q" * 24  # noqa: S105 - a throwaway bench secret
USERS = 50
NONCE_TTL = timedelta(minutes=30)
_CONNS = 16  # connections of the fixed-rate generator (64 thrashed gunicorn sync: reconnects)


@dataclass
class Load:
    """One measured load on one endpoint."""

    endpoint: str
    method: str
    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    wrapped: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


@dataclass
class ServerRun:
    server: str
    config: str
    loads: list[Load] = field(default_factory=list)

    def get(self, endpoint: str, method: str) -> Load | None:
        return next((x for x in self.loads if x.endpoint == endpoint and x.method == method), None)


# --- set-up ---------------------------------------------------------------------------------


def write_config(workdir: Path) -> Path:
    clients = workdir / "clients.yaml"
    clients.write_text(
        "clients:\n"
        f"  - client_id: {CALLER}\n"
        f"    client_secret_hash: '{hash_client_secret(CALLER_SECRET)}'\n"
        "    redirect_uris: ['https://unused.example/cb']\n",
        encoding="utf-8",
    )
    config = workdir / "posture.yaml"
    config.write_text(
        f"oidc:\n  clients_file: {clients}\n"
        f"integrations:\n  posture_api:\n    oauth_clients: [{CALLER}]\n",
        encoding="utf-8",
    )
    return config


def add_users(app: Any) -> None:
    """The directory users the fleet's devices belong to (the API names users by login)."""
    from mdm_core.storage.directory import DirectoryUser

    now = datetime.now(UTC)
    with app.extensions["posture"].core.storage.unit_of_work() as uow:
        for i in range(USERS):
            name = f"bench-user-{i}@example.com"
            # the id is what enrollment recorded as the devices' user
            uow.directory_users.upsert(DirectoryUser(name, name, True, "local", now))


def write_device_keys(fleet: list[Device], path: Path) -> None:
    keys = {
        d.device_id: d.key.private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
        for d in fleet
    }
    path.write_text(json.dumps(keys), encoding="utf-8")


def build_requests(
    app: Any, fleet: list[Device], audience: str, count: int, path: Path | None
) -> tuple[list[str], float, float]:
    """``count`` request bodies, each with a proof for its own nonce issued into the gateway's
    nonce store now (8 threads; each ``issue`` is one insert). Returns the bodies and the
    seconds spent issuing and signing."""
    from posture_gateway.access.nonces import NonceKind, nonce_purpose
    from posture_gateway.oidc.server import EXTENSION_KEY

    nonces_store = app.extensions[EXTENSION_KEY].nonces
    # The purpose POST /api/v1/nonce binds a nonce to: the API, its proof audience, the caller.
    purpose = nonce_purpose(NonceKind.API_DECISION, audience=audience, caller=CALLER)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        nonces = list(
            pool.map(lambda _: nonces_store.issue(NONCE_TTL, purpose=purpose), range(count))
        )
    issued = time.perf_counter() - t0
    t0 = time.perf_counter()
    bodies = []
    for i, nonce in enumerate(nonces):
        d = fleet[i % len(fleet)]  # enrolled for bench-user-{fleet index % 50}
        proof = d.key.login_proof(d.device_id, audience, nonce)
        bodies.append(
            json.dumps(
                {
                    "user": f"bench-user-{(i % len(fleet)) % USERS}@example.com",
                    "client_id": "bench-app",
                    "device_proof": proof,
                    "device_id": d.device_id,
                },
                separators=(",", ":"),
            )
        )
    signed = time.perf_counter() - t0
    if path is not None:
        path.write_text("\n".join(bodies) + "\n", encoding="utf-8")
    return bodies, issued, signed


def outcome_counts(app: Any) -> dict[str, int]:
    engine = app.extensions["posture"].core.database.engine
    with engine.connect() as conn:
        rows = conn.execute(
            select(audit_log.c.outcome, func.count())
            .where(audit_log.c.action == "access.decision")
            .group_by(audit_log.c.outcome)
        ).all()
    return {str(o): int(n) for o, n in rows}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


# --- servers and load -----------------------------------------------------------------------


def server_command(kind: str, port: int, threads: int) -> list[str]:
    if kind == "gunicorn-sync":
        return [str(VENV_BIN / "gunicorn"), "-w", "2", "-k", "sync", "-b", f"127.0.0.1:{port}",
                        "--log-level", "warning", "--backlog", "2048",
                "decision_wsgi:create_app()"]  # fmt: skip
    if kind == "granian":
        return [str(VENV_BIN / "granian"), "--interface", "wsgi", "--workers", "2",
                "--blocking-threads", str(threads), "--host", "127.0.0.1", "--port", str(port),
                "--factory", "--no-access-log", "--log-level", "warning",
                "decision_wsgi:create_app"]  # fmt: skip
    raise ValueError(kind)


_WRK = re.compile(r"WRK_RESULT (.*)")


def run_wrk(url: str, path: str, token: str, bodies: Path, args: argparse.Namespace) -> Load:
    cmd = [shutil.which("wrk") or "wrk", "-t", str(args.wrk_threads), "-c", str(args.connections),
           "-d", f"{args.duration}s", "--latency", "-s", str(LUA), url, "--", str(bodies),
           str(args.wrk_threads), path, token]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    match = _WRK.search(done.stdout)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{done.stdout}\n{done.stderr}")
    out = {k: int(v) for k, v in (kv.split("=") for kv in match.group(1).split())}
    return Load(
        endpoint=path,
        method=f"wrk -t{args.wrk_threads} -c{args.connections}",
        requests=out["requests"],
        duration_s=out["duration_us"] / 1e6,
        p50_ms=out["p50_us"] / 1000,
        p99_ms=out["p99_us"] / 1000,
        errors=out["non2xx"] + out["connect_errors"] + out["read_errors"] + out["timeouts"],
        wrapped=out["wrapped"],
    )


async def _fixed_rate(
    url: str, token: str, bodies: list[str], rate: float, seconds: float
) -> tuple[list[float], int, float]:
    """Open-loop load at ``rate``: request i is due at t0 + i/rate and its latency counts from
    then. Raw asyncio streams with requests encoded beforehand (httpx cost ~1-2 ms of CPU per
    request here, which made the generator the bottleneck); at most ``CONNS`` in flight, a
    late request waits for a free connection with its clock running."""
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
    count = min(len(bodies), int(rate * seconds))
    wire = [
        (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(b.encode())}\r\n\r\n{b}"
        ).encode()
        for b in bodies[:count]
    ]
    free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = asyncio.Queue()
    for _ in range(_CONNS):
        free.put_nowait(None)  # a slot; connected lazily, reconnected after "close"
    latencies: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.05

    async def one(i: int) -> None:
        nonlocal errors
        scheduled = t0 + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        conn = await free.get()
        try:
            if conn is None:
                conn = await asyncio.open_connection(host, port)
            reader, writer = conn
            writer.write(wire[i])
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            low = head.lower()
            length = int(low.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            await reader.readexactly(length)
            if status != 200:
                errors += 1
            if b"connection: close" in low:
                writer.close()
                conn = None
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            errors += 1
            conn = None
        latencies.append(loop.time() - scheduled)
        free.put_nowait(conn)

    # A server slower than the rate builds a queue: stop waiting at 2x the planned time plus
    # 5 s; what did not finish by then is counted (errors) at the cap latency.
    cap = seconds * 2 + 5
    try:
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), cap)
    except TimeoutError:
        missing = count - len(latencies)
        errors += missing
        latencies.extend([cap] * missing)
    elapsed = loop.time() - t0
    return latencies, errors, elapsed


def run_fixed(
    url: str, path: str, token: str, bodies: list[str], rate: float, seconds: float
) -> Load:
    latencies, errors, elapsed = asyncio.run(_fixed_rate(url + path, token, bodies, rate, seconds))
    ms = [x * 1000 for x in latencies]
    return Load(
        endpoint=path,
        method=f"fixed {rate:.0f}/s (open loop)",
        requests=len(ms),
        duration_s=elapsed,
        p50_ms=statistics.median(ms),
        p99_ms=pct(ms, 99),
        errors=errors,
    )


def bench_server(
    kind: str, *, app: Any, env: dict[str, str], fleet: list[Device], args: argparse.Namespace
) -> ServerRun:
    public_url = env["POSTURE_PUBLIC_URL"]
    audience = public_url + "/api/v1/decision"
    workdir = Path(env["BENCH_WORKDIR"])
    log_path = workdir / f"{kind}.log"
    run = ServerRun(
        kind,
        {"gunicorn-sync": "2 sync workers", "granian": f"2 workers, {args.threads} threads"}[kind],
    )
    with log_path.open("wb") as log:
        proc = subprocess.Popen(server_command(kind, args.port, args.threads), env=env,
                                cwd=workdir, stdout=subprocess.DEVNULL, stderr=log)  # fmt: skip
    try:
        wait_ready(public_url, proc)
        got = httpx.post(
            public_url + "/oauth/token",
            data={"grant_type": "client_credentials", "scope": "posture.decide"},
            auth=(CALLER, CALLER_SECRET),
        )
        got.raise_for_status()
        token = got.json()["access_token"]
        # Sanity: one decision goes through the whole pipeline (not a refusal).
        (probe,), _, _ = build_requests(app, fleet, audience, 1, None)
        answer = httpx.post(
            public_url + "/api/v1/decision",
            content=probe,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        ).json()
        print(f"  {kind}: probe decision {answer['outcome']} "
              f"{[r['code'] for r in answer['reasons']]}", flush=True)  # fmt: skip
        if any(r["code"] in ("nonce_invalid", "proof_invalid") for r in answer["reasons"]):
            raise RuntimeError(f"probe refused: {answer}")

        bare_file = workdir / "bare.jsonl"
        if not bare_file.exists():  # the floor reuses proofs (no nonce spent): one set
            build_requests(app, fleet, audience, 2000, bare_file)
        warm = workdir / f"warm-{kind}.jsonl"
        build_requests(app, fleet, audience, int(args.expect_rate * 2 * 1.5), warm)
        short = argparse.Namespace(**{**vars(args), "duration": 2})
        run_wrk(public_url, "/api/v1/decision", token, warm, short)
        run_wrk(public_url, "/bench/bare-verify", token, bare_file, short)

        main_file = workdir / f"reqs-{kind}.jsonl"
        count = int(args.expect_rate * args.duration * 1.5) + 1000
        _, issued_s, signed_s = build_requests(app, fleet, audience, count, main_file)
        print(f"  {kind}: {count} nonces issued in {issued_s:.1f}s, proofs signed in "
              f"{signed_s:.1f}s", flush=True)  # fmt: skip
        before = outcome_counts(app)
        run.loads.append(run_wrk(public_url, "/api/v1/decision", token, main_file, args))
        run.loads[-1].outcomes = delta(outcome_counts(app), before)
        run.loads.append(run_wrk(public_url, "/bench/bare-verify", token, bare_file, args))
        run.loads[-1].wrapped = 0  # the floor spends no nonce: reusing its proofs is fine

        # The target's fixed rate, and (when the server cannot sustain that) half of the
        # closed-loop maximum just measured: the latency it has at a rate it can carry.
        sustainable = run.loads[0].rate / 2
        rates = [args.fixed_rate] + ([round(sustainable)] if sustainable < args.fixed_rate else [])
        for rate in rates:
            fixed_n = int(rate * args.fixed_seconds) + 10
            fixed_bodies, _, _ = build_requests(app, fleet, audience, fixed_n, None)
            before = outcome_counts(app)
            run.loads.append(run_fixed(public_url, "/api/v1/decision", token, fixed_bodies,
                                       rate, args.fixed_seconds))  # fmt: skip
            run.loads[-1].outcomes = delta(outcome_counts(app), before)
            bare_bodies = bare_file.read_text(encoding="utf-8").splitlines()
            bare_bodies = (bare_bodies * (fixed_n // len(bare_bodies) + 1))[:fixed_n]
            run.loads.append(run_fixed(public_url, "/bench/bare-verify", token, bare_bodies,
                                       rate, args.fixed_seconds))  # fmt: skip
    finally:
        stop(proc)
        server_log = log_path.read_text(errors="replace")
        if "Traceback" in server_log:
            print(server_log[-3000:], file=sys.stderr)
    return run


# --- in-process profile ---------------------------------------------------------------------

STEPS = [
    ("whole decision (view, in-process)", "posture_gateway/integrations/posture_api.py", "decide"),
    (
        "  bearer token (JWT + grant store)",
        "posture_gateway/integrations/posture_api.py",
        "_oauth_caller",
    ),
    ("  user lookup (directory)", "posture_gateway/directory/identity.py", "resolve"),
    ("  nonce consume (SQL)", "posture_gateway/oidc/sql_nonces.py", "consume"),
    ("  proof verify (ES256 + device + replay)", "mdm_core/device/proof.py", "verify_login_proof"),
    (
        "    ES256 signature (cryptography)",
        "~",
        "<method 'verify' of 'cryptography.hazmat.bindings._rust.openssl.ec.ECPublicKey' objects>",
    ),  # fmt: skip
    ("  read + evaluate (one evaluator)", "mdm_core/access/evaluator.py", "_run"),
    ("    policy engine", "mdm_core/policy/engine.py", "evaluate"),
    ("    audit write (SQL)", "mdm_core/access/audit.py", "record"),
]


def profile(app: Any, fleet: list[Device], token: str, count: int, top: int) -> list[str]:
    audience = app.extensions["posture"].settings.public_url.rstrip("/") + "/api/v1/decision"
    bodies, _, _ = build_requests(app, fleet, audience, count + 50, None)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for b in bodies[:50]:
        client.post("/api/v1/decision", data=b, headers=headers)
    times = []
    profiler = cProfile.Profile()
    for b in bodies[50:]:
        t0 = time.perf_counter()
        profiler.enable()
        response = client.post("/api/v1/decision", data=b, headers=headers)
        profiler.disable()
        times.append(time.perf_counter() - t0)
        assert response.status_code == 200, response.get_data(as_text=True)
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    whole = next((v[3] for (f, _, fn), v in stats.items()
                  if fn == "decide" and f.endswith("posture_api.py")), 1.0)  # fmt: skip
    lines = [
        f"In-process through Flask's test client (no server, one thread, {count} decisions, "
        f"profiled): median {statistics.median(times) * 1000:.2f} ms.",
        "",
        "| step | ms per decision | share |",
        "|---|---:|---:|",
    ]
    for label, suffix, fname in STEPS:
        cum = sum(v[3] for (f, _, fn), v in stats.items() if fn == fname and f.endswith(suffix))
        if cum:
            lines.append(f"| {label} | {cum / count * 1000:.2f} | {cum / whole * 100:.0f} % |")
    sql = sum(v[1] for (f, _, fn), v in stats.items()
              if fn == "execute" and f.endswith("psycopg/cursor.py"))  # fmt: skip
    commits = sum(v[1] for (f, _, fn), v in stats.items()
                  if fn == "commit" and f.endswith("psycopg/connection.py"))  # fmt: skip
    lines += [
        "",
        f"SQL statements per decision (psycopg `execute`): {sql / count:.1f}; "
        f"commits: {commits / count:.1f}.",
        "",
        "| function (own time) | calls/decision | µs/decision | share |",
        "|---|---:|---:|---:|",
    ]
    rows = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)
    for (filename, line, fname), (_cc, ncalls, tottime, _cum, _callers) in rows[:top]:
        where = filename.replace(str(ROOT) + "/", "").split("site-packages/")[-1]
        lines.append(
            f"| `{fname}` ({where}:{line}) | {ncalls / count:.1f} | "
            f"{tottime / count * 1e6:.0f} | {tottime / whole * 100:.1f} % |"
        )
    return lines


# --- report ---------------------------------------------------------------------------------


def markdown(runs: list[ServerRun], hot: list[str], args: argparse.Namespace, pg: str) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "",
        f"## Posture decision API (`make bench-decision`, {now})",
        "",
        f"Machine: {os.cpu_count()} cores (load average {args.load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after), Python {pyplatform.python_version()}, PostgreSQL "
        f"{pg} (private, fsync off); {args.devices} enrolled devices, {USERS} directory users. "
        "One decision = bearer token (client credentials JWT + grant store), user lookup, "
        "nonce consume, ES256 login proof verify (+ replay record), posture + groups + rule "
        "failures read, policy evaluation, audit insert. Bare = same body, same proof, pyjwt "
        "ES256 verify only, on the same server processes. Closed loop: wrk + Lua with "
        "pre-built single-use requests; fixed rate: open-loop asyncio generator on raw "
        "sockets, pre-encoded requests, <= 16 connections (latency from the scheduled send time).",
        "",
        f"Targets: >= {TARGET_RATE:,.0f} decisions/s, p99 < {TARGET_P99_FIXED_MS:.0f} ms at "
        f"{args.fixed_rate:.0f}/s, >= {TARGET_RATIO}x the bare endpoint.",
        "",
        "| server | endpoint | load | req/s | p50 ms | p99 ms | errors | outcomes |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        for x in run.loads:
            outcomes = ", ".join(f"{k} {v}" for k, v in sorted(x.outcomes.items()))
            wrapped = f" (WRAPPED {x.wrapped}: void)" if x.wrapped else ""
            lines.append(
                f"| {run.server} ({run.config}) | `{x.endpoint}` | {x.method} | {x.rate:,.0f} | "
                f"{x.p50_ms:.1f} | {x.p99_ms:.1f} | {x.errors}{wrapped} | {outcomes} |"
            )
    lines += ["", "| server | decisions/s | ratio to bare | p99 at fixed rate | verdict |",
              "|---|---:|---:|---:|---|"]  # fmt: skip
    for run in runs:
        dec = run.get("/api/v1/decision", f"wrk -t{args.wrk_threads} -c{args.connections}")
        bare = run.get("/bench/bare-verify", f"wrk -t{args.wrk_threads} -c{args.connections}")
        fixed = next((x for x in run.loads if x.endpoint == "/api/v1/decision"
                      and x.method.startswith(f"fixed {args.fixed_rate:.0f}/s")), None)  # fmt: skip
        if dec is None or bare is None or fixed is None:
            continue
        ratio = dec.rate / bare.rate if bare.rate else 0.0
        missed = []
        if dec.rate < TARGET_RATE:
            missed.append(f"rate {dec.rate / TARGET_RATE:.0%} of target")
        if fixed.p99_ms >= TARGET_P99_FIXED_MS:
            missed.append(f"p99 {fixed.p99_ms / TARGET_P99_FIXED_MS:.1f}x target")
        if ratio < TARGET_RATIO:
            missed.append(f"ratio {ratio:.2f} < {TARGET_RATIO}")
        verdict = "met" if not missed else "MISSED: " + "; ".join(missed)
        lines.append(
            f"| {run.server} | {dec.rate:,.0f} | {ratio:.2f}x | {fixed.p99_ms:.1f} ms | {verdict} |"
        )
    if hot:
        lines += ["", *hot]
    return "\n".join(lines) + "\n"


def main() -> int:
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--duration", type=int, default=10, help="seconds per closed-loop run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4, help="granian blocking threads")
    parser.add_argument("--servers", default="gunicorn-sync,granian", help="comma separated")
    parser.add_argument("--expect-rate", type=float, default=1500.0, help="sizes the requests")
    parser.add_argument("--fixed-rate", type=float, default=500.0)
    parser.add_argument("--fixed-seconds", type=float, default=10.0)
    parser.add_argument("--profile", type=int, default=300, help="decisions profiled in-process")
    parser.add_argument("--profile-top", type=int, default=12)
    parser.add_argument("--record", action="store_true", help="append to docs/performance.md")
    args = parser.parse_args()
    args.load_before = os.getloadavg()[0]
    # SIGTERM unwinds like an exception, so the servers and PostgreSQL below are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if shutil.which("wrk") is None:
        print("wrk not found: run `make system-deps` (apt-get install wrk)", file=sys.stderr)
        return 2
    pg: PrivatePostgres | None = None
    server_url = os.environ.get("POSTURE_BENCH_DATABASE_URL")
    if not server_url:
        pg = PrivatePostgres()
        server_url = pg.start()
    workdir = Path(tempfile.mkdtemp(prefix="posture-bench-decision-"))
    try:
        db_url = fresh_database(server_url)
        args.port = free_port()
        public_url = f"http://127.0.0.1:{args.port}"
        env = server_env(db_url, workdir / "data", public_url)
        env["POSTURE_CONFIG"] = str(write_config(workdir))
        env["BENCH_DEVICE_KEYS"] = str(workdir / "device_keys.json")
        env["BENCH_WORKDIR"] = str(workdir)
        env["PYTHONPATH"] = os.pathsep.join([str(BENCH), str(ROOT)])
        app = build_app(env)
        with app.extensions["posture"].core.database.engine.connect() as conn:
            pg_version = str(conn.execute(text("SHOW server_version")).scalar()).split()[0]
        print(f"enrolling {args.devices} devices ...", flush=True)
        fleet = enroll_fleet(app, public_url, args.devices)
        add_users(app)
        write_device_keys(fleet, Path(env["BENCH_DEVICE_KEYS"]))

        runs = []
        for kind in [s.strip() for s in args.servers.split(",") if s.strip()]:
            print(f"HTTP: {kind} ...", flush=True)
            runs.append(bench_server(kind, app=app, env=env, fleet=fleet, args=args))
        hot: list[str] = []
        if args.profile:
            token = (
                app.test_client()
                .post(
                    "/oauth/token",
                    data={"grant_type": "client_credentials", "scope": "posture.decide"},
                    auth=(CALLER, CALLER_SECRET),
                )
                .json["access_token"]
            )
            hot = profile(app, fleet, token, args.profile, args.profile_top)
        section = markdown(runs, hot, args, pg_version)
        print(section)
        if args.record:
            with (ROOT / "docs" / "performance.md").open("a", encoding="utf-8") as fh:
                fh.write(section)
            print("recorded in docs/performance.md")
        app.extensions["posture"].core.close()
        bad = [x for r in runs for x in r.loads if x.errors or x.wrapped]
        for x in bad:
            print(f"not clean: {x.endpoint} {x.method}: {x.errors} errors, {x.wrapped} wraps")
        return 1 if bad else 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    sys.exit(main())
