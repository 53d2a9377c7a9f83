"""Benchmark: what the gateway app costs per request, whatever the route, vs a bare Flask app.

Two servers side by side, both started with the argv ``posture serve`` builds (its default
server, workers and threads): the real app (bench/overhead_wsgi.py ``create_real``: the
production app plus the decision endpoint's bare ES256 verify) and a bare Flask app
(``create_bare``: the same ``/healthz`` answer and the same ES256 verify without the bearer
check). ``wrk`` loads each in interleaved rounds (A B B A ...) on two routes:

- ``GET /healthz``: a trivial route, so the real app's figure is its per-request overhead
  (request id, access log, session, security headers, before/after hooks, ...);
- ``POST /bench/bare-verify``: one ES256 device proof verify (real app: plus the bearer
  check of the decision API, a client-credentials access token).

The figure that matters is **server CPU ms per request** (the server process tree's
utime + stime over the run divided by the requests wrk completed): unlike the rate it barely
depends on what else the machine is doing. The in-process figure (the WSGI app called
directly, ``time.process_time`` over many calls, no server) isolates the app from the server.

Services: a private PostgreSQL (fsync on; ``--relaxed`` adds a labelled pass) and Redis.
Target: the real app's ``/healthz`` costs at most 2x the bare app's server CPU per request.
Run: ``make bench-overhead`` (``--quick`` for a smoke run; ``--server-args`` appends options
to the server's argv to compare server settings, ``--profile DIR`` writes py-spy profiles).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402

BENCH = "overhead"
TARGETS = {"healthz_cpu_ratio_to_bare": {"max": 2.0}}
KID = "bench-overhead-device"
_REQUESTS = re.compile(r"(\d+) requests in ([\d.]+)(m?s)")
_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def _environ(method: str, path: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "wrk",
        "HTTP_ACCEPT": "*/*",
    }
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        env[key if key == "CONTENT_TYPE" else "HTTP_" + key] = value
    return env


def in_process_us(app: Any, iterations: int) -> float:
    """CPU microseconds per ``GET /healthz`` of ``app``'s WSGI callable (no server)."""
    status: list[str] = []

    def start_response(s: str, headers: Any, exc_info: Any = None) -> None:
        status.append(s)

    def one() -> None:
        body = app(_environ("GET", "/healthz", b"", {}), start_response)
        for _ in body:
            pass
        close: Callable[[], None] | None = getattr(body, "close", None)
        if close is not None:
            close()

    for _ in range(min(500, iterations)):
        one()
    if not status[-1].startswith("200"):
        raise RuntimeError(f"/healthz answered {status[-1]}")
    t0 = time.process_time()
    for _ in range(iterations):
        one()
    return (time.process_time() - t0) / iterations * 1e6


def _bare_flask() -> Any:
    import overhead_wsgi

    return overhead_wsgi.create_bare()


def wrk(
    url: str, seconds: float, connections: int, threads: int, script: Path | None
) -> tuple[int, float, int]:
    """(requests, seconds, non-2xx) of one wrk run."""
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s", url]
    if script is not None:
        argv[1:1] = ["-s", str(script)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout  # noqa: S603
    match = _REQUESTS.search(out)
    if match is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    secs = float(match[2]) / (1000 if match[3] == "ms" else 1)
    bad = _NON2XX.search(out)
    return int(match[1]), secs, int(bad[1]) if bad else 0


def _post_script(path: Path, body: str, token: str | None) -> Path:
    headers = 'wrk.headers["Content-Type"] = "application/json"\n'
    if token is not None:
        headers += f'wrk.headers["Authorization"] = "Bearer {token}"\n'
    path.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n{headers}', "utf-8")
    return path


def _workers(server: h.Server) -> list[int]:
    root = server.proc.pid if server.proc else None
    out = subprocess.run(["pgrep", "-P", str(root)], capture_output=True, text=True).stdout  # noqa: S603, S607
    return [int(p) for p in out.split()]


def _server_argv(server: str, port: int, factory: str) -> list[str]:
    """The argv ``posture serve --server SERVER`` builds (default workers and threads), with
    ``factory`` instead of the app's."""
    from posture_gateway.cli import serve

    _, workers, threads = h._serve_defaults()
    argv = serve._argv(server, "127.0.0.1", port, workers, threads)
    plain = serve.APP_FACTORY.removesuffix("()")
    return [
        factory if a == plain else factory + "()" if a == serve.APP_FACTORY else a for a in argv
    ]


def measure(
    server: h.Server, route: str, url: str, args: Any, script: Path | None, label: str
) -> dict[str, Any]:
    cpu0 = server.cpu_seconds()
    spy: subprocess.Popen[bytes] | None = None
    if args.profile:
        worker = _workers(server)[0]
        out = Path(args.profile) / f"{label}-{route.strip('/').replace('/', '_')}.txt"
        spy = subprocess.Popen(  # noqa: S603 - fixed argv: py-spy on our own worker
            [
                str(h.VENV_BIN / "py-spy"),
                "record",
                "-p",
                str(worker),
                "--gil",
                "-d",
                f"{max(1, int(args.seconds) - 1)}",
                "-r",
                "200",
                "-f",
                "raw",
                "-o",
                str(out),
                "--nonblocking",
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    requests, secs, bad = wrk(url + route, args.seconds, args.connections, args.wrk_threads, script)
    cpu = server.cpu_seconds() - cpu0
    if spy is not None:
        spy.wait(timeout=60)
    return {
        "server": label,
        "route": route,
        "requests": requests,
        "per_s": requests / secs if secs else 0.0,
        "non_2xx": bad,
        "cpu_ms": cpu * 1e3 / requests if requests else float("nan"),
    }


def one_pass(args: Any, durable: bool) -> dict[str, Any]:
    import bench_decision
    import httpx
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from posture_gateway.observability.logs import configure_logging

    with h.Services(durable=durable) as services, h.workdir("posture-bench-overhead-") as wd:
        db_url = h.fresh_database(services.server_url)
        port, bare_port = h.free_port(), h.free_port()
        url = f"http://127.0.0.1:{port}"
        env = h.server_env(db_url, wd / "data", url, services.redis_url)
        config = bench_decision.write_files(wd)
        env["POSTURE_CONFIG"] = str(config)
        key = ec.generate_private_key(ec.SECP256R1())
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        (wd / "public_keys.json").write_text(json.dumps({KID: public.decode()}), "utf-8")
        env["BENCH_DEVICE_KEYS"] = str(wd / "public_keys.json")

        # In process: the WSGI callables themselves, access log formatted as served.
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        app = h.build_app(env)
        with open(os.devnull, "w", encoding="utf-8") as devnull:
            root.handlers = []
            configure_logging("text", stream=devnull)  # the one handler, as served
            inproc_real = in_process_us(app.wsgi_app, args.inproc)
            root.handlers, root.level = handlers, level
        app.extensions["posture"].core.close()
        os.environ.update({k: v for k, v in env.items() if k.startswith(("BENCH_", "POSTURE_"))})
        inproc_bare = in_process_us(_bare_flask().wsgi_app, args.inproc)
        print(f"  in process: real {inproc_real:.0f} us, bare {inproc_bare:.0f} us", flush=True)

        real = h.Server.same_server(env, config, port, wd, "overhead_wsgi:create_real", "real")
        bare_env = {**env, "POSTURE_PUBLIC_URL": url}  # the proof's audience is the real one
        bare = h.Server.same_server(
            bare_env, config, bare_port, wd, "overhead_wsgi:create_bare", "bare"
        )
        if args.server:
            real.argv = _server_argv(args.server, port, "overhead_wsgi:create_real")
            bare.argv = _server_argv(args.server, bare_port, "overhead_wsgi:create_bare")
        servers = {"real": real, "bare": bare}
        if args.compare:  # the real app of another checkout (main: the figures before)
            other = h.Server.same_server(
                {**env, "PYTHONPATH": os.pathsep.join([args.compare, str(h.BENCH)])},
                config, h.free_port(), wd, "overhead_wsgi:create_real", "compare",
            )  # fmt: skip
            if args.server:
                other.argv = _server_argv(args.server, other.port, "overhead_wsgi:create_real")
            servers["compare"] = other
        for server in servers.values():
            server.argv += shlex.split(args.server_args)
        with contextlib.ExitStack() as running:
            for server in servers.values():
                running.enter_context(server)
            got = httpx.post(
                url + "/oauth/token",
                auth=(bench_decision.CALLER, bench_decision.CALLER_SECRET),
                data={"grant_type": "client_credentials", "scope": "posture.decide"},
            )
            got.raise_for_status()
            token = got.json()["access_token"]
            proof = jwt.encode(
                {"aud": url + "/api/v1/decision", "nonce": secrets.token_urlsafe(24),
                 "iat": int(time.time()), "jti": secrets.token_urlsafe(16)},
                key, algorithm="ES256", headers={"kid": KID},
            )  # fmt: skip
            body = json.dumps({"device_proof": proof, "user": "u", "client_id": "c"})
            scripts = {
                "real": _post_script(wd / "real.lua", body, token),
                "compare": _post_script(wd / "real.lua", body, token),
                "bare": _post_script(wd / "bare.lua", body, None),
            }
            for name, server in servers.items():  # warm-up, and every route answers 200
                for route in ("/healthz", "/bench/bare-verify"):
                    script = scripts[name] if route != "/healthz" else None
                    warm = wrk(server.url + route, 1, 2, 1, script)
                    if warm[2]:
                        raise RuntimeError(f"{name} {route}: {warm[2]} non-2xx answers")
            runs: list[dict[str, Any]] = []
            for r in range(args.rounds):
                order = list(servers) if r % 2 == 0 else list(servers)[::-1]
                for route in ("/healthz", "/bench/bare-verify"):
                    for name in order:
                        print(f"  round {r + 1}/{args.rounds}: {name} {route} ...", flush=True)
                        script = scripts[name] if route != "/healthz" else None
                        runs.append(
                            measure(servers[name], route, servers[name].url, args, script, name)
                        )
    return report(args, services.label, runs, inproc_real, inproc_bare, real)


def report(
    args: Any,
    label: str,
    runs: list[dict[str, Any]],
    inproc_real: float,
    inproc_bare: float,
    real: h.Server,
) -> dict[str, Any]:
    h.print_table(
        f"per-request overhead [{label}]",
        ["server", "route", "requests", "req/s", "non-2xx", "server CPU ms/req"],
        [
            [x["server"], x["route"], x["requests"], x["per_s"], x["non_2xx"], x["cpu_ms"]]
            for x in runs
        ],  # fmt: skip
    )

    def cpu(server: str, route: str) -> float:
        mine = [x for x in runs if x["server"] == server and x["route"] == route]
        total = sum(x["requests"] for x in mine)
        return sum(x["cpu_ms"] * x["requests"] for x in mine) / total if total else float("nan")

    def rate(server: str, route: str) -> float:
        mine = [x["per_s"] for x in runs if x["server"] == server and x["route"] == route]
        return sum(mine) / len(mine) if mine else float("nan")

    real_h, bare_h = cpu("real", "/healthz"), cpu("bare", "/healthz")
    real_v, bare_v = cpu("real", "/bench/bare-verify"), cpu("bare", "/bench/bare-verify")
    compared: dict[str, Any] = {}
    if args.compare:
        compared = {
            "compare_root": args.compare,
            "healthz_cpu_ms_compare": cpu("compare", "/healthz"),
            "bare_verify_cpu_ms_compare": cpu("compare", "/bench/bare-verify"),
            "healthz_per_s_compare": rate("compare", "/healthz"),
            "bare_verify_per_s_compare": rate("compare", "/bench/bare-verify"),
        }
    return {
        "postgres": label,
        "healthz_cpu_ms_real": real_h,
        "healthz_cpu_ms_bare": bare_h,
        "healthz_cpu_ratio_to_bare": real_h / bare_h if bare_h else float("nan"),
        "app_overhead_cpu_ms": real_h - bare_h,
        "bare_verify_cpu_ms_real": real_v,
        "bare_verify_cpu_ms_bare": bare_v,
        "bearer_and_app_cpu_ms": real_v - bare_v,
        "inproc_healthz_us_real": inproc_real,
        "inproc_healthz_us_bare": inproc_bare,
        "healthz_per_s_real": rate("real", "/healthz"),
        "healthz_per_s_bare": rate("bare", "/healthz"),
        "bare_verify_per_s_real": rate("real", "/bench/bare-verify"),
        "bare_verify_per_s_bare": rate("bare", "/bench/bare-verify"),
        **compared,
        "non_2xx": sum(x["non_2xx"] for x in runs),
        "server": (
            (f"--server {args.server}: " if args.server else "")
            + real.description
            + (f" + {args.server_args}" if args.server_args else "")
        ),
        "client": f"wrk -t{args.wrk_threads} -c{args.connections}",
        "rounds": args.rounds,
        "seconds_per_run": args.seconds,
    }


def main() -> int:
    logging.basicConfig(level=logging.ERROR)
    parser = h.base_parser((__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (A B B A)")
    parser.add_argument("--seconds", type=float, default=8.0, help="per server, route, round")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--inproc", type=int, default=20_000, help="in-process iterations")
    parser.add_argument("--server-args", default="", help="options appended to the server argv")
    parser.add_argument(
        "--server", choices=["granian", "gunicorn"], default="", help="posture serve --server"
    )
    parser.add_argument("--profile", default="", help="directory for py-spy --gil profiles")
    parser.add_argument(
        "--compare",
        default="",
        help="root of another checkout (e.g. /work/main): its real app is served and measured "
        "too, in the same rounds (before/after figures paired on the same machine state)",
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.inproc = 2, 3.0, 3_000
    if shutil.which("wrk") is None:
        print("wrk is not installed (make system-deps)", file=sys.stderr)
        return 2
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    print(h.machine_line())
    metrics = h.durable_then_relaxed(one_pass, args)
    return h.emit(BENCH, metrics, TARGETS)


if __name__ == "__main__":
    sys.exit(main())
