"""Benchmark: signed device check-ins end to end over HTTP, on a private PostgreSQL.

What one check-in costs the server: verify the ES256 device proof (signature, freshness,
target, body hash, replay), normalise the platform-native report, drop what the privacy
profile does not keep, store latest posture + history, and answer with pending commands.

Measured side by side in one run, same database, same enrolled fleet:

- gunicorn, 2 sync workers;
- gunicorn, 2 gthread workers with tuned threads;
- granian (WSGI), 2 workers;
- in-process: the check-in path called without HTTP (one thread), plus a cProfile of it.

The load generator is ``wrk`` driven by ``bench/checkin.lua``: it replays requests
PRE-SIGNED just before each run (every proof single-use: unique jti, fresh iat, spread over
many enrolled devices), so the generator does no crypto and the server refuses nothing.

Targets: >= 1,000 check-ins/s and p99 < 50 ms over HTTP on this machine (2 cores shared by
wrk, the server and PostgreSQL). ``--record`` appends the figures to docs/performance.md.

Run: ``make bench-checkin`` (or ``.venv/bin/python bench/bench_checkin.py --help``).
PostgreSQL: ``POSTURE_BENCH_DATABASE_URL`` if set, else a private instance in a temp dir.
"""

from __future__ import annotations

import argparse
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
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import text  # noqa: E402

from mdm_core.agent.client import DeviceClient, make_http_client  # noqa: E402
from mdm_core.agent.keys import DeviceKey  # noqa: E402
from mdm_core.simulator.reports import DeviceTraits, native_reports  # noqa: E402
from mdm_core.storage.sql.database import Database  # noqa: E402
from tests.services import PrivatePostgres, free_port  # noqa: E402

TARGET_RATE = 1000.0
TARGET_P99_MS = 50.0
PLATFORMS = ("ios", "ipados", "macos", "android", "windows", "linux")
VENV_BIN = Path(sys.executable).parent
LUA = Path(__file__).with_name("checkin.lua")


@dataclass
class Device:
    device_id: str
    key: DeviceKey
    bodies: list[bytes]  # what this device sends, in turn (Apple: MDM report, then app report)


@dataclass
class HttpResult:
    server: str
    config: str
    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non2xx: int
    socket_errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def ok(self) -> bool:
        return self.non2xx == 0 and self.socket_errors == 0


# --- set-up ---------------------------------------------------------------------------------


def fresh_database(server_url: str) -> str:
    name = "bench_" + uuid.uuid4().hex[:12]
    admin = Database(server_url)
    with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server_url.rsplit("/", 1)[0] + "/" + name


def server_env(db_url: str, data_dir: Path, public_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTURE_")}
    env.update(
        POSTURE_DATABASE_URL=db_url,
        POSTURE_DATA_DIR=str(data_dir),
        POSTURE_PUBLIC_URL=public_url,
        POSTURE_DEV_MODE="true",
        POSTURE_POLICY_DIR=str(ROOT / "policies"),
        # the whole fleet enrolls from this one address in seconds: lift the /enroll limit
        POSTURE_ENROLL__LIMIT_PER_SOURCE="1000000",
    )
    return env


def build_app(env: dict[str, str]) -> Any:
    from posture_gateway.app import create_app
    from posture_gateway.settings import load_settings

    return create_app(load_settings(environ=env))


def enroll_fleet(app: Any, public_url: str, count: int) -> list[Device]:
    """Enroll ``count`` corporate devices (registered serials) through the protocol, in-process,
    and check each in once so the steady state (posture rows exist) is what is measured."""
    from posture_gateway.app import GatewayState

    st: GatewayState = app.extensions["posture"]
    transport = httpx.WSGITransport(app=app)
    http = make_http_client(public_url, transport=transport)
    fleet: list[Device] = []
    run = uuid.uuid4().hex[:6].upper()
    for i in range(count):
        platform = PLATFORMS[i % len(PLATFORMS)]
        serial = f"BENCH{run}{i:06d}"
        secret = st.core.enrollment.register_serial(
            serial, platform, f"bench-user-{i % 50}@example.com", "admin:bench"
        ).enrollment_secret  # type: ignore[arg-type]
        key = DeviceKey.generate()
        client = DeviceClient(public_url, key, http=http)
        client.enroll(
            platform=platform,
            ownership="corporate",
            serial_number=serial,
            enrollment_secret=secret,
        )
        bodies = []
        for fmt, report in native_reports(platform, serial, "corporate", DeviceTraits()):
            client.checkin(fmt, report)
            bodies.append(
                json.dumps({"format": fmt, "report": report}, separators=(",", ":")).encode()
            )
        assert client.device_id is not None
        fleet.append(Device(client.device_id, key, bodies))
    http.close()
    return fleet


def _requests(fleet: list[Device], count: int) -> list[tuple[Device, bytes]]:
    """``count`` (device, body) pairs, round-robin over the fleet and each device's bodies."""
    out = []
    for i in range(count):
        d = fleet[i % len(fleet)]
        out.append((d, d.bodies[(i // len(fleet)) % len(d.bodies)]))
    return out


def presign(fleet: list[Device], url: str, count: int, path: Path) -> float:
    """Write ``count`` single-use signed check-ins (cycling over the fleet) to ``path``."""
    t0 = time.perf_counter()
    with path.open("w", encoding="utf-8") as fh:
        for d, body in _requests(fleet, count):
            proof = d.key.request_proof(d.device_id, "POST", url, body)
            fh.write(proof)
            fh.write("\t")
            fh.write(body.decode())
            fh.write("\n")
    return time.perf_counter() - t0


# --- servers --------------------------------------------------------------------------------


def server_command(kind: str, port: int, threads: int) -> list[str]:
    target = "posture_gateway.app:create_app()"
    if kind == "gunicorn-sync":
        return [str(VENV_BIN / "gunicorn"), "-w", "2", "-k", "sync", "-b", f"127.0.0.1:{port}",
                "--log-level", "warning", "--backlog", "2048", target]  # fmt: skip
    if kind == "gunicorn-gthread":
        return [str(VENV_BIN / "gunicorn"), "-w", "2", "-k", "gthread", "--threads", str(threads),
                "-b", f"127.0.0.1:{port}", "--log-level", "warning", target]  # fmt: skip
    if kind == "granian":
        return [str(VENV_BIN / "granian"), "--interface", "wsgi", "--workers", "2",
                "--blocking-threads", str(threads), "--host", "127.0.0.1", "--port", str(port),
                "--factory", "--no-access-log", "--log-level", "warning",
                "posture_gateway.app:create_app"]  # fmt: skip
    raise ValueError(kind)


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
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


_WRK = re.compile(r"WRK_RESULT (.*)")


def run_wrk(
    url: str, requests_file: Path, duration: int, threads: int, conns: int
) -> dict[str, int]:
    cmd = [shutil.which("wrk") or "wrk", "-t", str(threads), "-c", str(conns), "-d", f"{duration}s",
           "--latency", "-s", str(LUA), url, "--", str(requests_file), str(threads)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    match = _WRK.search(done.stdout)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{done.stdout}\n{done.stderr}")
    return {k: int(v) for k, v in (kv.split("=") for kv in match.group(1).split())}


def bench_server(
    kind: str,
    *,
    env: dict[str, str],
    port: int,
    fleet: list[Device],
    duration: int,
    threads: int,
    wrk_threads: int,
    conns: int,
    expect_rate: float,
    workdir: Path,
) -> HttpResult:
    public_url = env["POSTURE_PUBLIC_URL"]
    checkin_url = public_url + "/mdm/v1/checkin"
    log_path = workdir / f"{kind}.log"
    with log_path.open("wb") as log:  # a file, never a pipe nobody reads (it would fill up)
        proc = subprocess.Popen(server_command(kind, port, threads), env=env, cwd=workdir,
                                stdout=subprocess.DEVNULL, stderr=log)  # fmt: skip
    try:
        wait_ready(public_url, proc)
        warm = workdir / f"warm-{kind}.tsv"
        presign(fleet, checkin_url, int(expect_rate * 2 * 1.5), warm)
        run_wrk(public_url, warm, 2, wrk_threads, conns)
        reqs = workdir / f"reqs-{kind}.tsv"
        count = int(expect_rate * duration * 1.6) + 1000
        signing_s = presign(fleet, checkin_url, count, reqs)
        out = run_wrk(public_url, reqs, duration, wrk_threads, conns)
        print(f"  {kind}: pre-signed {count} check-ins in {signing_s:.1f}s", flush=True)
    finally:
        stop(proc)
        server_log = log_path.read_text(errors="replace")
        if "Traceback" in server_log:
            print(server_log[-3000:], file=sys.stderr)
    config = {"gunicorn-sync": "2 workers", "gunicorn-gthread": f"2 workers x {threads} threads",
              "granian": f"2 workers, {threads} blocking threads"}[kind]  # fmt: skip
    return HttpResult(
        server=kind,
        config=config,
        requests=out["requests"],
        duration_s=out["duration_us"] / 1e6,
        p50_ms=out["p50_us"] / 1000,
        p90_ms=out["p90_us"] / 1000,
        p99_ms=out["p99_us"] / 1000,
        max_ms=out["max_us"] / 1000,
        non2xx=out["non2xx"],
        socket_errors=out["connect_errors"] + out["read_errors"] + out["timeouts"],
    )


# --- in-process -----------------------------------------------------------------------------


def inprocess_checkins(app: Any, fleet: list[Device], url: str, count: int) -> list[float]:
    """The check-in path without HTTP: verify the proof, parse, normalise, store, answer
    commands, in one unit of work, exactly as the view does. Returns per-call seconds."""
    core = app.extensions["posture"].core
    signed = [
        (d.key.request_proof(d.device_id, "POST", url, body), body)
        for d, body in _requests(fleet, count)
    ]
    times: list[float] = []
    for proof, body in signed:
        t0 = time.perf_counter()
        _one_checkin(core, proof, body, url)
        times.append(time.perf_counter() - t0)
    return times


#: The steps of one check-in, as (file suffix, function) whose cumulative time is reported.
STEPS = [
    ("whole check-in (in-process)", "bench/bench_checkin.py", "_one_checkin"),
    ("  begin + commit (unit of work)", "mdm_core/storage/sql/database.py", "transaction"),
    ("  verify proof", "mdm_core/device/proof.py", "verify"),
    ("    device + certificate lookup (SQL)", "mdm_core/storage/sql/identity.py", "lookup"),
    (
        "    device + certificate lookup + replay insert (one SQL statement)",
        "mdm_core/storage/sql/identity.py",
        "lookup_and_remember",
    ),
    ("    ES256 signature (pyjwt + cryptography)", "jwt/api_jwt.py", "decode_complete"),
    ("    replay insert (SQL)", "mdm_core/storage/sql/replay.py", "remember"),
    ("  normalise the report", "mdm_core/posture/normalize.py", "normalize"),
    ("  privacy filter", "mdm_core/domain/privacy.py", "apply"),
    ("  store latest + history (SQL)", "mdm_core/storage/sql/posture.py", "record"),
    ("  compliance hook (policy engine)", "mdm_core/policy/compliance_hook.py", "after_checkin"),
    ("  deliver commands (SQL)", "mdm_core/device/commands.py", "deliver"),
    ("  outbox events (SQL)", "mdm_core/storage/sql/outbox.py", "add"),
]


def _one_checkin(core: Any, proof: str, body: bytes, url: str) -> None:
    with core.storage.unit_of_work() as uow:
        device = core.proofs.verify(proof, method="POST", url=url, body=body, uow=uow)
        data = json.loads(body)
        result = core.checkin.check_in(device, data["report"], data["format"], uow=uow)
        json.dumps(result.answer())


def profile_steps(app: Any, fleet: list[Device], url: str, count: int, top: int) -> list[str]:
    """Where the time goes: cumulative time per check-in step, then the functions with the
    most own time (cProfile inflates small functions; read the shares, not the absolutes)."""
    core = app.extensions["posture"].core
    signed = [
        (d.key.request_proof(d.device_id, "POST", url, body), body)
        for d, body in _requests(fleet, count)
    ]
    profiler = cProfile.Profile()
    profiler.enable()
    for proof, body in signed:
        _one_checkin(core, proof, body, url)
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    whole = next(
        (v[3] for (f, _, fn), v in stats.items() if fn == "_one_checkin" and f.endswith(".py")),
        1.0,
    )
    lines = [
        "| step | ms per check-in | share |",
        "|---|---:|---:|",
    ]
    for label, suffix, func in STEPS:
        cum = sum(v[3] for (f, _, fn), v in stats.items() if fn == func and f.endswith(suffix))
        if cum:
            lines.append(f"| {label} | {cum / count * 1000:.2f} | {cum / whole * 100:.0f} % |")
    sql = sum(
        v[1]
        for (f, _, fn), v in stats.items()
        if fn == "execute" and f.endswith("psycopg/cursor.py")
    )
    lines += [
        "",
        f"SQL statements per check-in (psycopg `execute`): {sql / count:.1f}, plus BEGIN/COMMIT.",
        "",
        "| function (own time) | calls/check-in | µs/check-in | share |",
        "|---|---:|---:|---:|",
    ]
    rows = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)
    for (filename, line, func), (_cc, ncalls, tottime, _cum, _callers) in rows[:top]:
        where = filename.replace(str(ROOT) + "/", "").split("site-packages/")[-1]
        lines.append(
            f"| `{func}` ({where}:{line}) | {ncalls / count:.1f} | "
            f"{tottime / count * 1e6:.0f} | {tottime / whole * 100:.1f} % |"
        )
    return lines


# --- report ---------------------------------------------------------------------------------


def round_trip_us(app: Any, count: int = 500) -> float:
    """Median ``SELECT 1`` round trip to the same PostgreSQL, from this process, right now:
    the unit every SQL statement of a check-in costs at least once."""
    engine = app.extensions["posture"].core.database.engine
    times = []
    with engine.connect() as conn:
        for _ in range(count):
            t0 = time.perf_counter()
            conn.execute(text("SELECT 1")).scalar()
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def pct(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def markdown(
    results: list[HttpResult],
    inproc: list[float],
    hot: list[str],
    args: argparse.Namespace,
    pg_version: str,
) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "",
        f"## Signed check-ins (`make bench-checkin`, {now})",
        "",
        f"Machine: {os.cpu_count()} cores (load average {args.load_before:.1f} before the run, "
        f"{os.getloadavg()[0]:.1f} after), Python {pyplatform.python_version()}, "
        f"PostgreSQL {pg_version} (private, fsync off), wrk -t{args.wrk_threads} "
        f"-c{args.connections} -d{args.duration}s on the same machine; {args.devices} enrolled "
        "devices of all six platforms, each request a distinct pre-signed proof.",
        "One check-in = verify ES256 proof + replay insert, normalise the native report, privacy "
        "filter, store latest + history, compliance hook, outbox events, deliver commands.",
        "",
        f"Targets: >= {TARGET_RATE:,.0f} check-ins/s and p99 < {TARGET_P99_MS:.0f} ms over HTTP.",
        "",
        "| server | config | check-ins/s | p50 ms | p90 ms | p99 ms | errors | target |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        met = r.rate >= TARGET_RATE and r.p99_ms < TARGET_P99_MS and r.ok
        lines.append(
            f"| {r.server} | {r.config} | {r.rate:,.0f} | {r.p50_ms:.1f} | {r.p90_ms:.1f} | "
            f"{r.p99_ms:.1f} | {r.non2xx + r.socket_errors} | {'met' if met else 'MISSED'} |"
        )
    if inproc:
        ms = [t * 1000 for t in inproc]
        lines += [
            "",
            f"In-process (no HTTP, one thread, {len(ms)} calls): median "
            f"{statistics.median(ms):.2f} ms, p99 {pct(ms, 99):.2f} ms, "
            f"= {1000 / statistics.mean(ms):,.0f} check-ins/s per core.",
        ]
        lines.append(
            f"PostgreSQL round trip (`SELECT 1`, median, measured alongside): "
            f"{args.rtt_us:.0f} µs before the in-process run, {args.rtt_after_us:.0f} µs after "
            "the HTTP runs."
        )
        bare, relay_ms, drained = args.inproc_bare
        bms = [t * 1000 for t in bare]
        lines.append(
            f"With the outbox relay paused: median {statistics.median(bms):.2f} ms, p99 "
            f"{pct(bms, 99):.2f} ms; draining the {drained} events afterwards cost "
            f"{relay_ms:.2f} ms per check-in."
        )
    if hot:
        lines += [
            "",
            "Where the in-process time goes (cProfile; profiling inflates the absolutes):",
            "",
            *hot,
        ]
    return "\n".join(lines) + "\n"


def record(section: str) -> None:
    path = ROOT / "docs" / "performance.md"
    if not path.exists():
        path.write_text(
            "# Performance\n\nFigures measured by the benchmarks under `bench/`; each section "
            "says how it was measured. Re-measure before relying on one.\n",
            encoding="utf-8",
        )
    with path.open("a", encoding="utf-8") as fh:
        fh.write(section)


def main() -> int:
    logging.basicConfig(level=logging.ERROR)  # quarantine notices per device are not news here
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=300)
    parser.add_argument("--duration", type=int, default=10, help="seconds per server")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4, help="gthread / granian threads")
    parser.add_argument(
        "--servers", default="gunicorn-sync,gunicorn-gthread,granian", help="comma separated"
    )
    parser.add_argument("--expect-rate", type=float, default=3000.0, help="sizes the pre-signing")
    parser.add_argument("--inprocess", type=int, default=1000, help="in-process check-ins")
    parser.add_argument("--profile-top", type=int, default=15)
    parser.add_argument("--record", action="store_true", help="append to docs/performance.md")
    args = parser.parse_args()
    args.load_before = os.getloadavg()[0]

    if shutil.which("wrk") is None:
        print("wrk not found: run `make system-deps` (apt-get install wrk)", file=sys.stderr)
        return 2
    pg: PrivatePostgres | None = None
    server_url = os.environ.get("POSTURE_BENCH_DATABASE_URL")
    if not server_url:
        pg = PrivatePostgres()
        server_url = pg.start()
    workdir = Path(tempfile.mkdtemp(prefix="posture-bench-"))
    try:
        db_url = fresh_database(server_url)
        port = free_port()
        public_url = f"http://127.0.0.1:{port}"
        env = server_env(db_url, workdir / "data", public_url)
        app = build_app(env)
        with app.extensions["posture"].core.database.engine.connect() as conn:
            pg_version = str(conn.execute(text("SHOW server_version")).scalar()).split()[0]
        print(f"enrolling {args.devices} devices ...", flush=True)
        t0 = time.perf_counter()
        fleet = enroll_fleet(app, public_url, args.devices)
        print(f"  done in {time.perf_counter() - t0:.1f}s", flush=True)

        checkin_url = public_url + "/mdm/v1/checkin"
        args.rtt_us = round_trip_us(app)
        print(f"in-process: {args.inprocess} check-ins ...", flush=True)
        inprocess_checkins(app, fleet, checkin_url, min(200, args.inprocess))  # warm-up
        inproc = inprocess_checkins(app, fleet, checkin_url, args.inprocess)
        core = app.extensions["posture"].core
        core.relay.stop()  # the same path with the outbox relay paused, then its drain timed
        core.relay.drain()
        bare = inprocess_checkins(app, fleet, checkin_url, args.inprocess)
        t0 = time.perf_counter()
        drained = core.relay.drain()
        relay_ms = (time.perf_counter() - t0) * 1000 / max(1, args.inprocess)
        args.inproc_bare = (bare, relay_ms, drained)
        hot = profile_steps(app, fleet, checkin_url, min(1000, args.inprocess), args.profile_top)

        results: list[HttpResult] = []
        for kind in [s.strip() for s in args.servers.split(",") if s.strip()]:
            print(f"HTTP: {kind} ...", flush=True)
            results.append(
                bench_server(
                    kind,
                    env=env,
                    port=port,
                    fleet=fleet,
                    duration=args.duration,
                    threads=args.threads,
                    wrk_threads=args.wrk_threads,
                    conns=args.connections,
                    expect_rate=args.expect_rate,
                    workdir=workdir,
                )
            )
        args.rtt_after_us = round_trip_us(app)
        section = markdown(results, inproc, hot, args, pg_version)
        print(section)
        if args.record:
            record(section)
            print("recorded in docs/performance.md")
        app.extensions["posture"].core.close()
        failed = [r for r in results if not r.ok]
        return 1 if failed else 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    sys.exit(main())
