"""Benchmark: the posture decision API over HTTP, as a real caller uses it, vs a bare endpoint.

One decision, as an identity provider does it (every step inside the timed loop):
``POST /api/v1/nonce`` (bearer token) -> the device signs an ES256 login proof over that nonce
and the returned audience -> ``POST /api/v1/decision`` with the proof. The server: bearer
check (client-credentials JWT + grant store), nonce issue, user resolve, nonce consume, proof
verify (+ replay record), groups (nested, three deep), posture, rule failures, policy
evaluation, audit write.

Side by side in interleaved rounds (A B B A ...), on the SAME server processes:
``POST /bench/bare-verify`` (bench/decision_wsgi.py): the same bearer check, the same body
parser, one ES256 verify of a proof the client signs the same way, nothing else. The ratio
is complete decisions/s (two requests each) over bare verifies/s (one request each).

Then an open-loop load at ``--rate`` decisions/s (default 500) for the p99.

The server warms its read model as a served worker does in production
(posture_gateway/access/warm_start.py: each worker bulk-reads the decision state of the
``read_model.warm_devices`` most recently checked-in devices and their owners at start); the
bench waits for every worker's "read model warm" log line before it measures, so the figures
are those of a warmed worker (every entry is still version-checked by each decision). After
the load it prints each worker's read-model cache hit rate (``GET /bench/read-model``).

Server: ``posture serve``'s own argv and defaults, serving decision_wsgi:create_app; on a
private PostgreSQL (fsync + synchronous_commit on; ``--relaxed`` adds a labelled pass with
them off) and Redis. Data: 20,000 devices, 10,000 users, groups nested three deep.
Targets: >= 2,000 decisions/s, >= 0.7x bare (stretch 0.8x), p99 <= 10 ms at 500/s open loop.
Run: ``make bench-decision`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402

BENCH = "decision"
CALLER = "bench-idp"
CALLER_SECRET = "bench-caller-secret-" + "q" * 24  # noqa: S105 - a throwaway bench secret
APPS = ("intranet-web", "crm-web", "payroll-web", "bench-app")
TARGETS = {
    "decisions_per_s": {"min": 2000.0},
    "ratio_to_bare": {"min": 0.7},
    "p99_ms_open_loop": {"max": 10.0},
}
STRETCH_RATIO = 0.8


def _fleet(params: Mapping[str, Any], proc: int) -> list[dict[str, Any]]:
    return h.fleet_share(params["fleet"], params["procs"], proc)


def decision_op(params: Mapping[str, Any], proc: int, thread: int) -> Callable[[int], str]:
    """A real caller: nonce, device proof over it, decision. Returns the outcome."""
    from mdm_core.agent.keys import DeviceKey

    fleet = _fleet(params, proc)
    http = h.Http(params["url"])
    auth = {"Authorization": f"Bearer {params['token']}"}
    json_auth = {**auth, "Content-Type": "application/json"}
    keys = [DeviceKey(d["key"]) for d in fleet]

    def op(i: int) -> str:
        n = (i * 7919) % len(fleet)
        device = fleet[n]
        status, raw = http.request("POST", "/api/v1/nonce", b"", auth)
        if status != 200:
            raise RuntimeError(f"nonce {status}: {raw[:200]!r}")
        issued = json.loads(raw)
        proof = keys[n].login_proof(device["id"], issued["audience"], issued["nonce"])
        body = json.dumps(
            {
                "user": device["user"],
                "client_id": APPS[i % len(APPS)],
                "device_id": device["id"],
                "device_proof": proof,
            }
        ).encode()
        status, raw = http.request("POST", "/api/v1/decision", body, json_auth)
        if status != 200:
            raise RuntimeError(f"decision {status}: {raw[:200]!r}")
        answer = json.loads(raw)
        codes = {r["code"] for r in answer["reasons"]}
        if codes & {"nonce_invalid", "proof_invalid", "user_unknown", "device_unknown"}:
            raise RuntimeError(f"refused: {codes}")
        return str(answer["outcome"])

    return op


def bare_op(params: Mapping[str, Any], proc: int, thread: int) -> Callable[[int], str]:
    """The floor: the same client signing, one request, the same bearer check server side."""
    import secrets

    from mdm_core.agent.keys import DeviceKey

    fleet = _fleet(params, proc)
    http = h.Http(params["url"])
    json_auth = {"Authorization": f"Bearer {params['token']}", "Content-Type": "application/json"}
    keys = [DeviceKey(d["key"]) for d in fleet]
    audience = params["audience"]

    def op(i: int) -> str:
        n = (i * 7919) % len(fleet)
        device = fleet[n]
        proof = keys[n].login_proof(device["id"], audience, secrets.token_urlsafe(24))
        body = json.dumps(
            {
                "user": device["user"],
                "client_id": APPS[i % len(APPS)],
                "device_id": device["id"],
                "device_proof": proof,
            }
        ).encode()
        status, raw = http.request("POST", "/bench/bare-verify", body, json_auth)
        if status != 200:
            raise RuntimeError(f"bare {status}: {raw[:200]!r}")
        return "verified"

    return op


def write_files(workdir: Path) -> Path:
    from posture_gateway.oidc.passwords import hash_client_secret

    clients = workdir / "clients.yaml"
    clients.write_text(
        "clients:\n"
        f"  - client_id: {CALLER}\n"
        f"    client_secret_hash: '{hash_client_secret(CALLER_SECRET)}'\n"
        "    redirect_uris: ['https://unused.example/cb']\n",
        encoding="utf-8",
    )
    return h.write_config(
        workdir,
        {
            "oidc": {"clients_file": str(clients)},
            "integrations": {"posture_api": {"oauth_clients": [CALLER]}},
        },
    )


def one_pass(args: Any, durable: bool) -> dict[str, Any]:
    import httpx
    from cryptography.hazmat.primitives import serialization

    with h.Services(durable=durable) as services, h.workdir("posture-bench-decision-") as wd:
        db_url = h.fresh_database(services.server_url)
        port = h.free_port()
        url = f"http://127.0.0.1:{port}"
        env = h.server_env(db_url, wd / "data", url, services.redis_url)
        config = write_files(wd)
        env["POSTURE_CONFIG"] = str(config)
        app = h.build_app(env)
        print(f"[{services.label}] seeding ...", flush=True)
        fleet = h.seed(app, url, wd, devices=args.devices, users=args.users, caller=CALLER)
        app.extensions["posture"].core.close()
        print("  " + fleet.describe(), flush=True)
        public = {}
        for item in h.load_fleet(fleet.keys_file):
            public[item["id"]] = (
                item["key"]
                .public_key()
                .public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                .decode()
            )
        (wd / "public_keys.json").write_text(json.dumps(public), encoding="utf-8")
        env["BENCH_DEVICE_KEYS"] = str(wd / "public_keys.json")
        # What `posture serve` tells its workers (worker_environment): background jobs, the
        # read-model warm-up among them, start in served workers.
        env["POSTURE_SERVE_WORKER"] = "1"
        if args.cold:  # the A/B: workers that fill their read model on misses only
            env["POSTURE_READ_MODEL__WARM_DEVICES"] = "0"
        server = h.Server.same_server(env, config, port, wd, "decision_wsgi:create_app", "ours")
        with server:
            _wait_warm(server)
            got = httpx.post(
                url + "/oauth/token",
                auth=(CALLER, CALLER_SECRET),
                data={"grant_type": "client_credentials", "scope": "posture.decide"},
            )
            got.raise_for_status()
            params = {
                "url": url,
                "token": got.json()["access_token"],
                "fleet": str(fleet.keys_file),
                "procs": args.procs,
                "audience": url + "/api/v1/decision",
            }
            decision_op(params, 0, 0)(0)  # fails loudly if the pipeline refuses
            bare_op(params, 0, 0)(0)
            common = {
                "procs": args.procs,
                "threads": args.threads,
                "server": server,
                "db_pid": services.postmaster_pid(),
            }
            h.run_load("warm-up", decision_op, params, seconds=args.warmup, **common)
            h.run_load("warm-up", bare_op, params, seconds=args.warmup, **common)
            loads: list[h.Load] = []
            for r in range(args.rounds):
                order = [("decision", decision_op), ("bare", bare_op)]
                for name, op in order if r % 2 == 0 else order[::-1]:
                    print(f"  round {r + 1}/{args.rounds}: {name} ...", flush=True)
                    loads.append(h.run_load(name, op, params, seconds=args.seconds, **common))
            print(f"  open loop at {args.rate:g}/s ...", flush=True)
            fixed = h.run_load(
                "decision", decision_op, params, seconds=args.open_seconds, rate=args.rate, **common
            )
            hit_rates = _read_model_counters(url)
    return {**report(args, services.label, fleet, server, loads, fixed), **hit_rates}


WARM_TIMEOUT_S = 300.0


def _wait_warm(server: h.Server) -> None:
    """Until every worker logged its read model warm (or failed to: then it serves cold)."""
    import time

    from posture_gateway.access.warm_start import WARM_LOG

    if server.env.get("POSTURE_READ_MODEL__WARM_DEVICES") == "0":
        print("  read model warm-up off (POSTURE_READ_MODEL__WARM_DEVICES=0)", flush=True)
        return
    workers = h._serve_defaults()[1]
    deadline = time.monotonic() + WARM_TIMEOUT_S
    started = time.monotonic()
    while time.monotonic() < deadline:
        text = (server.workdir / f"{server.name}.log").read_text(errors="replace")
        done = [ln for ln in text.splitlines() if WARM_LOG in ln]
        if len(done) >= workers:
            print(f"  read model warm in {time.monotonic() - started:.1f} s:", flush=True)
            for line in done:
                print("    " + line.strip(), flush=True)
            return
        time.sleep(0.5)
    print(f"  WARNING: not every worker warm after {WARM_TIMEOUT_S:g} s", flush=True)


def _read_model_counters(url: str) -> dict[str, Any]:
    """Each worker's read-model cache counters (a few GETs land on every worker)."""
    import httpx

    seen: dict[int, dict[str, Any]] = {}
    for _ in range(20):
        got = httpx.get(url + "/bench/read-model", timeout=5.0).json()
        seen[int(got["pid"])] = got
    rates = {}
    for pid, c in sorted(seen.items()):
        total = c["hits"] + c["misses"]
        rate = c["hits"] / total if total else 0.0
        rates[pid] = rate
        print(f"  read model pid {pid}: {c['entries']} entries, hit rate {rate:.3f} ({total} gets)")
    return {"read_model_hit_rate": min(rates.values()) if rates else float("nan")}


def report(
    args: Any, label: str, fleet: h.Fleet, server: h.Server, loads: list[h.Load], fixed: h.Load
) -> dict[str, Any]:
    rows = [x.row() for x in [*loads, fixed]]
    h.print_table(f"decision API [{label}]", h.Load.COLUMNS, rows)

    def pooled(name: str) -> tuple[float, list[float], int, bool]:
        mine = [x for x in loads if x.label == name]
        ops = sum(x.ops for x in mine)
        secs = sum(x.seconds for x in mine)
        return (
            ops / secs if secs else 0.0,
            [v for x in mine for v in x.latencies_ms],
            sum(x.errors for x in mine),
            any(x.client_bound for x in mine),
        )

    dec_rate, dec_lat, dec_err, dec_cb = pooled("decision")
    bare_rate, bare_lat, bare_err, bare_cb = pooled("bare")
    outcomes: dict[str, int] = {}
    for x in [*loads, fixed]:
        if x.label == "decision":
            for k, v in x.extra.get("outcomes", {}).items():
                outcomes[k] = outcomes.get(k, 0) + v
    for x in [*loads, fixed]:
        if x.first_error:
            print(f"  first error ({x.label}, {x.mode}): {x.first_error}")
    ratio = dec_rate / bare_rate if bare_rate else 0.0
    print(f"  outcomes: {outcomes}; client-bound: decision {dec_cb}, bare {bare_cb}")
    return {
        "postgres": label,
        "decisions_per_s": dec_rate,
        "http_requests_per_s": dec_rate * 2,
        "bare_verifies_per_s": bare_rate,
        "ratio_to_bare": ratio,
        "stretch_ratio_met": ratio >= STRETCH_RATIO,
        "closed_p50_ms": h.percentile(dec_lat, 50),
        "closed_p99_ms": h.percentile(dec_lat, 99),
        "bare_p99_ms": h.percentile(bare_lat, 99),
        "open_loop_rate": args.rate,
        "open_loop_achieved_per_s": fixed.rate,
        "p50_ms_open_loop": h.percentile(fixed.latencies_ms, 50),
        "p99_ms_open_loop": h.percentile(fixed.latencies_ms, 99),
        "client_late_p99_ms": fixed.late_ms_p99,
        "open_loop_dropped": fixed.extra["dropped"],
        "errors": dec_err + bare_err + fixed.errors,
        "client_bound": dec_cb or bare_cb or fixed.client_bound,
        "client_cpu_pct_max": max(max(x.client_cpu_pct) for x in [*loads, fixed]),
        "server_cpu_pct_decision": h.mean(
            [x.server_cpu_pct for x in loads if x.label == "decision"]
        ),
        "machine_busy_pct": h.mean([x.machine_busy_pct for x in loads]),
        "server_cpu_ms_per_decision": h.mean(
            [x.server_cpu_ms_per_op for x in loads if x.label == "decision"]
        ),
        "server_cpu_ms_per_bare_verify": h.mean(
            [x.server_cpu_ms_per_op for x in loads if x.label == "bare"]
        ),
        "outcomes": outcomes,
        "devices": fleet.devices,
        "users": fleet.users,
        "client": f"{args.procs} processes x {args.threads} threads",
        "server": server.description,
        "rounds": args.rounds,
        "seconds_per_round": args.seconds,
    }


def main() -> int:
    logging.basicConfig(level=logging.ERROR)
    parser = h.base_parser((__doc__ or "").split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--threads", type=int, default=8, help="client threads per process")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (A B B A)")
    parser.add_argument("--seconds", type=float, default=8.0, help="per endpoint per round")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rate", type=float, default=500.0, help="open-loop decisions/s")
    parser.add_argument("--open-seconds", type=float, default=15.0)
    parser.add_argument(
        "--cold", action="store_true", help="workers do not warm their read model (A/B)"
    )
    args = parser.parse_args()
    if args.quick:
        args.devices, args.users, args.rounds, args.seconds = 600, 300, 2, 2.0
        args.warmup, args.open_seconds, args.rate = 1.0, 3.0, min(args.rate, 100.0)
    print(h.machine_line())
    metrics = h.durable_then_relaxed(one_pass, args)
    return h.emit(BENCH, metrics, TARGETS)


if __name__ == "__main__":
    sys.exit(main())
