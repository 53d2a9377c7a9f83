"""Benchmark: signed device check-ins end to end over HTTP, on the server as it ships.

One check-in, as a device does it (inside the timed loop): the device signs an ES256 request
proof over the exact body (method, URL, body hash, fresh iat, unique jti) and sends
``POST /mdm/v1/checkin`` with its platform-native report. The server verifies the proof
(signature, freshness, target, body hash, replay), normalises the report, applies the
privacy profile, stores latest posture + history, runs the compliance hook (groups nested
three deep, policy evaluation), writes outbox events, and answers with pending commands.

Server: ``posture --config FILE serve`` with its defaults, on a private PostgreSQL (fsync +
synchronous_commit on; ``--relaxed`` adds a labelled pass with them off) and Redis. Data:
20,000 enrolled devices of all six platforms, 10,000 users; check-ins spread over the fleet.
Client: processes x threads in a closed loop (p99 is at that concurrency).
Targets: >= 1,000 check-ins/s, p99 <= 50 ms. Run: ``make bench-checkin`` (``--quick``).
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

BENCH = "checkin"
TARGETS = {"checkins_per_s": {"min": 1000.0}, "p99_ms": {"max": 50.0}}


def checkin_op(params: Mapping[str, Any], proc: int, thread: int) -> Callable[[int], str]:
    from mdm_core.agent.keys import DeviceKey
    from mdm_core.simulator.reports import DeviceTraits, native_reports

    fleet = h.fleet_share(params["fleet"], params["procs"], proc)
    http = h.Http(params["url"])
    url = params["url"] + "/mdm/v1/checkin"
    bodies: dict[int, list[bytes]] = {}
    keys: dict[int, DeviceKey] = {}

    def op(i: int) -> str:
        n = (i * 7919) % len(fleet)
        device = fleet[n]
        if n not in bodies:  # the device's own reports (Apple: MDM channel, then the app)
            reports = native_reports(
                device["platform"], device["serial"], "corporate", DeviceTraits()
            )
            bodies[n] = [
                json.dumps({"format": f, "report": r}, separators=(",", ":")).encode()
                for f, r in reports
            ]
            keys[n] = DeviceKey(device["key"])
        body = bodies[n][(i // len(fleet)) % len(bodies[n])]
        proof = keys[n].request_proof(device["id"], "POST", url, body)
        status, raw = http.request(
            "POST",
            "/mdm/v1/checkin",
            body,
            {"Device-Proof": proof, "Content-Type": "application/json"},
        )
        if status != 200:
            raise RuntimeError(f"checkin {status}: {raw[:200]!r}")
        return "ok"

    return op


def one_pass(args: Any, durable: bool) -> dict[str, Any]:
    with h.Services(durable=durable) as services, h.workdir("posture-bench-checkin-") as wd:
        db_url = h.fresh_database(services.server_url)
        port = h.free_port()
        url = f"http://127.0.0.1:{port}"
        env = h.server_env(db_url, wd / "data", url, services.redis_url)
        config = h.write_config(wd, {})
        env["POSTURE_CONFIG"] = str(config)
        app = h.build_app(env)
        print(f"[{services.label}] seeding ...", flush=True)
        fleet = h.seed(app, url, wd, devices=args.devices, users=args.users)
        app.extensions["posture"].core.close()
        print("  " + fleet.describe(), flush=True)
        server = h.Server.posture_serve(env, config, port, wd)
        with server:
            params = {"url": url, "fleet": str(fleet.keys_file), "procs": args.procs}
            checkin_op(params, 0, 0)(0)  # fails loudly if refused
            common = {
                "procs": args.procs,
                "threads": args.threads,
                "server": server,
                "db_pid": services.postmaster_pid(),
            }
            h.run_load("warm-up", checkin_op, params, seconds=args.warmup, **common)
            print(f"  closed loop {args.seconds:g} s ...", flush=True)
            load = h.run_load("check-in", checkin_op, params, seconds=args.seconds, **common)
    h.print_table(f"check-ins [{services.label}]", h.Load.COLUMNS, [load.row()])
    if load.first_error:
        print(f"  first error: {load.first_error}")
    s = h.summarize(load.latencies_ms)
    return {
        "postgres": services.label,
        "checkins_per_s": load.rate,
        "p50_ms": s["p50"],
        "p90_ms": s["p90"],
        "p99_ms": s["p99"],
        "errors": load.errors,
        "client_bound": load.client_bound,
        "client_cpu_pct_max": max(load.client_cpu_pct),
        "server_cpu_pct": load.server_cpu_pct,
        "postgres_cpu_pct": load.db_cpu_pct,
        "machine_busy_pct": load.machine_busy_pct,
        "server_cpu_ms_per_checkin": load.server_cpu_ms_per_op,
        "devices": fleet.devices,
        "users": fleet.users,
        "client": f"{args.procs} processes x {args.threads} threads, closed loop",
        "server": server.description,
        "seconds": args.seconds,
    }


def main() -> int:
    logging.basicConfig(level=logging.ERROR)
    parser = h.base_parser((__doc__ or "").split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--threads", type=int, default=8, help="client threads per process")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=4.0)
    args = parser.parse_args()
    if args.quick:
        args.devices, args.users, args.seconds, args.warmup = 600, 300, 3.0, 1.0
    print(h.machine_line())
    metrics = h.durable_then_relaxed(one_pass, args)
    return h.emit(BENCH, metrics, TARGETS)


if __name__ == "__main__":
    sys.exit(main())
