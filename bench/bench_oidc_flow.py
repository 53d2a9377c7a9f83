"""Benchmark: complete OIDC authorization-code flows per second, ours vs npm ``oidc-provider``.

One flow, as a headless client (no browser) does it:

- ours (granian with 2 workers, then 1, on PostgreSQL): ``GET /oauth/authorize`` (PKCE S256,
  nonce, state) -> ``GET /login`` -> ``POST /login/password`` -> ``GET /login/device`` (a
  nonce issued into the gateway's nonce store) -> ``POST /login/device`` with a device login
  proof the client signs (ES256, the enrolled device key) for that nonce -> the real device
  gate (proof verify, posture read, policy evaluation, audit) -> redirect with the code (an
  outcome ``warn`` first shows its notice: ``POST /login/continue``) ->
  ``POST /oauth/token`` (client_secret_basic + PKCE) -> access token and an RS256 ID token;
- the peer: ``oidc-provider`` 9 (tests/peers/node/upstream_idp.mjs, one node process, its
  own in-memory adapter), started exactly as the peer tests start it: ``GET /auth`` -> the
  login and consent interactions, answered without a UI -> redirect with the code ->
  ``POST /token`` (client_secret_basic + PKCE) -> access token and an RS256 ID token. It
  checks no password and no device: it issues plain tokens.

The same client code drives both: ``--procs`` processes x ``--threads`` threads, each thread
running flows back to back with its own connection pool and a fresh cookie jar per flow, for
``--duration`` seconds. Our users' passwords are hashed with scrypt N=``--scrypt-n`` (default
2^10, what the tests use: the production default 2^15 costs ~130 ms per login by design and
would measure the password hash, not the protocol; its cost is printed separately).

Target: ours at least as many flows/s as oidc-provider. Run: ``make bench-oidc-flow``.
``--record`` appends to docs/performance.md. PostgreSQL: ``POSTURE_BENCH_DATABASE_URL`` or a
private instance.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import hashlib
import logging
import os
import platform as pyplatform
import pstats
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import httpx  # noqa: E402
import jwt  # noqa: E402
from bench_checkin import build_app, enroll_fleet, fresh_database, pct, server_env, stop  # noqa: E402
from bench_checkin import wait_ready as wait_ready_readyz  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from mdm_core.agent.keys import DeviceKey  # noqa: E402
from posture_gateway.oidc.passwords import hash_client_secret, hash_password  # noqa: E402
from tests.peers.upstream_idp import UpstreamIdp  # noqa: E402
from tests.services import PrivatePostgres, free_port  # noqa: E402

VENV_BIN = Path(sys.executable).parent
CLIENT_ID = "bench-rp"
CLIENT_SECRET = "bench-rp-secret-" + "k" * 28  # noqa: S105 - a throwaway bench secret
PASSWORD = "bench-password-" + "p" * 12  # noqa: S105 - a throwaway bench password
REDIRECT = "http://127.0.0.1:9/callback"  # never fetched: the client reads the code from it
USERS = 50


warned = [0]  # flows in this process that went through the warn notice


@dataclass(frozen=True)
class Target:
    """What a worker needs to run flows against one server (picklable)."""

    kind: str  # "ours" | "peer"
    base: str
    authorize_path: str
    token_path: str
    devices: tuple[tuple[str, str, bytes], ...] = ()  # (username, device_id, key PEM)


@dataclass
class FlowResult:
    server: str
    config: str
    flows: int
    seconds: float
    latencies_ms: list[float]
    errors: int
    first_error: str
    warned: int = 0

    @property
    def rate(self) -> float:
        return self.flows / self.seconds if self.seconds else 0.0


# --- the headless client --------------------------------------------------------------------


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _field(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    if match is None:
        raise RuntimeError(f"no {name} in page: {html[:300]}")
    return match.group(1)


def _code(location: str, state: str) -> str:
    query = parse_qs(urlsplit(location).query)
    if query.get("state") != [state] or "code" not in query:
        raise RuntimeError(f"no code in redirect: {location[:300]}")
    return query["code"][0]


def _follow_to_redirect_uri(client: httpx.Client, response: httpx.Response) -> str:
    for _ in range(12):
        if response.status_code not in (302, 303):
            raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
        location = urljoin(str(response.url), response.headers["location"])
        if location.startswith(REDIRECT):
            return location
        response = client.get(location)
    raise RuntimeError("too many redirects")


def one_flow(
    client: Any, target: Target, device: tuple[str, str, DeviceKey] | None
) -> dict[str, Any]:
    """One complete code flow; returns the token response. Raises on any deviation."""
    client.cookies.clear()
    verifier, challenge = _pkce()
    state, nonce = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "scope": "openid email profile",
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    response = client.get(target.authorize_path + "?" + urlencode(params))
    if target.kind == "ours":
        assert device is not None
        username, device_id, key = device
        if response.status_code != 303:
            raise RuntimeError(f"authorize {response.status_code}: {response.text[:300]}")
        page = client.get("/login")
        response = client.post(
            "/login/password",
            data={
                "csrf_token": _field(page.text, "csrf_token"),
                "username": username,
                "password": PASSWORD,
            },
        )
        if response.status_code != 303:
            raise RuntimeError(f"password {response.status_code}: {response.text[:300]}")
        page = client.get("/login/device")
        device_nonce = _field(page.text, "nonce")
        proof = key.login_proof(device_id, target.base, device_nonce)  # ES256, the agent's way
        response = client.post(
            "/login/device",
            data={
                "csrf_token": _field(page.text, "csrf_token"),
                "nonce": device_nonce,
                "proof": proof,
            },
        )
        if response.status_code == 200 and 'name="ticket"' in response.text:
            # outcome warn: the notice page, then the user continues (part of the flow)
            response = client.post(
                "/login/continue",
                data={
                    "csrf_token": _field(response.text, "csrf_token"),
                    "ticket": _field(response.text, "ticket"),
                },
            )
            warned[0] += 1
        location = response.headers.get("location", "")
        if response.status_code != 302 or not location.startswith(REDIRECT):
            raise RuntimeError(f"device {response.status_code}: {response.text[:300]}")
    else:
        location = _follow_to_redirect_uri(client, response)
    code = _code(location, state)
    response = client.post(
        target.token_path,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    if response.status_code != 200:
        raise RuntimeError(f"token {response.status_code}: {response.text[:300]}")
    tokens: dict[str, Any] = response.json()
    claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    if claims.get("nonce") != nonce or "access_token" not in tokens:
        raise RuntimeError(f"bad token response: {sorted(tokens)}")
    return tokens


def _keys(target: Target) -> list[tuple[str, str, DeviceKey]]:
    out = []
    for username, device_id, pem in target.devices:
        key = serialization.load_pem_private_key(pem, None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        out.append((username, device_id, DeviceKey(key)))
    return out


def worker(
    target: Target, threads: int, seconds: float, seed: int
) -> tuple[list[float], int, str, int]:
    """Run flows back to back on ``threads`` threads for ``seconds``; latencies in ms."""
    keys = _keys(target)
    latencies: list[float] = []
    errors = [0]
    first: list[str] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def loop(n: int) -> None:
        with httpx.Client(base_url=target.base, timeout=30.0) as client:
            i = seed * 1000 + n
            while time.perf_counter() < deadline:
                device = keys[i % len(keys)] if keys else None
                i += threads
                t0 = time.perf_counter()
                try:
                    one_flow(client, target, device)
                except Exception as exc:  # noqa: BLE001 - counted and shown, not hidden
                    with lock:
                        errors[0] += 1
                        if not first:
                            first.append(repr(exc)[:300])
                    continue
                with lock:
                    latencies.append((time.perf_counter() - t0) * 1000)

    pool = [threading.Thread(target=loop, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return latencies, errors[0], first[0] if first else "", warned[0]


def drive(
    target: Target, args: argparse.Namespace, seconds: float
) -> tuple[list[float], int, str, int]:
    with ProcessPoolExecutor(args.procs) as pool:
        futures = [
            pool.submit(worker, target, args.threads, seconds, seed) for seed in range(args.procs)
        ]
        results = [f.result() for f in futures]
    latencies = [x for r in results for x in r[0]]
    first = next((r[2] for r in results if r[2]), "")
    return latencies, sum(r[1] for r in results), first, sum(r[3] for r in results)


# --- servers --------------------------------------------------------------------------------


def write_config(workdir: Path, scrypt_n: int) -> Path:
    clients = workdir / "clients.yaml"
    clients.write_text(
        "clients:\n"
        f"  - client_id: {CLIENT_ID}\n"
        f"    client_secret_hash: '{hash_client_secret(CLIENT_SECRET)}'\n"
        f"    redirect_uris: ['{REDIRECT}']\n"
        "    scopes: [openid, profile, email]\n"
        "    id_token_signed_response_alg: RS256\n",
        encoding="utf-8",
    )
    users = workdir / "users.yaml"
    pw = hash_password(PASSWORD, n=scrypt_n)  # one hash for all: the cost per check is the same
    users.write_text(
        "users:\n"
        + "".join(
            f"  - username: bench-user-{i}\n"
            f"    user_id: bench-user-{i}@example.com\n"
            f'    password_hash: "{pw}"\n'
            f"    email: bench-user-{i}@example.com\n"
            for i in range(USERS)
        ),
        encoding="utf-8",
    )
    config = workdir / "posture.yaml"
    config.write_text(
        f"oidc:\n  clients_file: {clients}\n  users_file: {users}\n  max_failed_logins: 1000000\n",
        encoding="utf-8",
    )
    return config


def add_directory_users(app: Any) -> None:
    from mdm_core.storage.directory import DirectoryUser

    now = datetime.now(UTC)
    with app.extensions["posture"].core.storage.unit_of_work() as uow:
        for i in range(USERS):
            name = f"bench-user-{i}@example.com"
            uow.directory_users.upsert(DirectoryUser(name, name, True, "local", now))


def ours_command(kind: str, port: int, threads: int) -> list[str]:
    if kind == "gunicorn-sync":
        return [str(VENV_BIN / "gunicorn"), "-w", "2", "-k", "sync", "-b", f"127.0.0.1:{port}",
                "--log-level", "warning", "--backlog", "2048",
                "posture_gateway.app:create_app()"]  # fmt: skip
    if kind in ("granian", "granian-1"):  # granian-1: one worker, like the one node process
        workers = "1" if kind == "granian-1" else "2"
        return [str(VENV_BIN / "granian"), "--interface", "wsgi", "--workers", workers,
                "--blocking-threads", str(threads), "--host", "127.0.0.1", "--port", str(port),
                "--factory", "--no-access-log", "--log-level", "warning",
                "posture_gateway.app:create_app"]  # fmt: skip
    raise ValueError(kind)


def run_target(name: str, config: str, target: Target, args: argparse.Namespace) -> FlowResult:
    with httpx.Client(base_url=target.base, timeout=30.0) as probe:  # fails loudly if broken
        one_flow(probe, target, _keys(target)[0] if target.devices else None)
    drive(target, args, min(3.0, args.duration))  # warm-up
    t0 = time.perf_counter()
    latencies, errors, first, warned_flows = drive(target, args, args.duration)
    seconds = time.perf_counter() - t0
    print(f"  {name}: {len(latencies)} flows ({warned_flows} via the warn notice), {errors} "
          f"errors {first}", flush=True)  # fmt: skip
    return FlowResult(name, config, len(latencies), seconds, latencies, errors, first, warned_flows)


# --- profile --------------------------------------------------------------------------------

STEPS = [
    ("whole flow (in-process, test client)", "bench_oidc_flow.py", "one_flow"),
    ("  authorize", "posture_gateway/oidc/web.py", "authorize"),
    ("  password (scrypt)", "posture_gateway/oidc/local_users.py", "verify"),
    ("  device nonce issue (SQL)", "posture_gateway/oidc/sql_nonces.py", "issue"),
    ("  device nonce consume (SQL)", "posture_gateway/oidc/sql_nonces.py", "consume"),
    (
        "  access evaluator (proof, posture, policy, audit)",
        "mdm_core/access/evaluator.py",
        "decide",
    ),
    ("    proof verify", "mdm_core/device/proof.py", "verify_login_proof"),
    ("    policy engine", "mdm_core/policy/engine.py", "evaluate"),
    ("    audit write (SQL)", "mdm_core/access/audit.py", "record"),
    (
        "  RS256 signatures (ID + access token)",
        "~",
        "<method 'sign' of 'cryptography.hazmat.bindings._rust.openssl.rsa.RSAPrivateKey' objects>",
    ),  # fmt: skip
]


class _TestClientAdapter:
    """Just enough of httpx.Client over Flask's test client for ``one_flow``."""

    def __init__(self, app: Any) -> None:
        self._client = app.test_client()
        self.cookies = self

    def clear(self) -> None:
        self._client._cookies.clear()

    def get(self, url: str) -> Any:
        return _Resp(self._client.get(url))

    def post(self, url: str, data: dict[str, str], auth: tuple[str, str] | None = None) -> Any:
        headers = {}
        if auth:
            raw = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {raw}"
        return _Resp(self._client.post(url, data=data, headers=headers))


class _Resp:
    def __init__(self, r: Any) -> None:
        self.status_code = r.status_code
        self.headers = {k.lower(): v for k, v in r.headers.items()}
        self.text = r.get_data(as_text=True)
        self._r = r

    def json(self) -> Any:
        return self._r.json


def profile(app: Any, target: Target, count: int, top: int) -> list[str]:
    client = _TestClientAdapter(app)
    keys = _keys(target)
    for i in range(20):
        one_flow(client, target, keys[i % len(keys)])
    profiler = cProfile.Profile()
    times = []
    for i in range(count):
        t0 = time.perf_counter()
        profiler.enable()
        one_flow(client, target, keys[i % len(keys)])
        profiler.disable()
        times.append(time.perf_counter() - t0)
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    whole = next((v[3] for (f, _, fn), v in stats.items()
                  if fn == "one_flow" and f.endswith("bench_oidc_flow.py")), 1.0)  # fmt: skip
    lines = [
        f"In-process profile (Flask test client, one thread, {count} flows, client work "
        f"included): median {statistics.median(times) * 1000:.1f} ms per flow.",
        "",
        "| step | ms per flow | share |",
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
        f"SQL statements per flow (psycopg `execute`): {sql / count:.1f}; commits: "
        f"{commits / count:.1f}.",
        "",
        "| function (own time) | calls/flow | µs/flow | share |",
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


def markdown(
    results: list[FlowResult], hot: list[str], args: argparse.Namespace, scrypt_ms: dict[int, float]
) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    lines = [
        "",
        f"## Complete OIDC code flows (`make bench-oidc-flow`, {now})",
        "",
        f"Machine: {os.cpu_count()} cores (load average {args.load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after), Python {pyplatform.python_version()}, node {node}; "
        f"client: {args.procs} processes x {args.threads} threads of the same headless Python "
        f"client (httpx), flows back to back for {args.duration}s per server, on the same "
        "machine. Ours: authorize -> login page -> password (scrypt "
        f"N=2^{args.scrypt_n.bit_length() - 1}) -> device page (nonce) -> ES256 device "
        "login proof -> device gate (proof, posture, policy, audit) -> code -> token "
        "(RS256 ID token + access token), PostgreSQL. oidc-provider: authorize -> login "
        "and consent interactions (no password, no device) -> code -> token (RS256 ID token), "
        "in-memory.",
        "",
        "Target: ours at least as many flows/s as oidc-provider.",
        "",
        "| server | config | flows/s | p50 ms | p99 ms | errors | via warn notice |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lat = r.latencies_ms or [0.0]
        lines.append(
            f"| {r.server} | {r.config} | {r.rate:,.1f} | {statistics.median(lat):.1f} | "
            f"{pct(lat, 99):.1f} | {r.errors} | {r.warned} |"
        )
    peer = next((r for r in results if r.server == "oidc-provider"), None)
    for r in results:
        if peer is not None and r is not peer and peer.rate:
            ratio = r.rate / peer.rate
            verdict = "met" if ratio >= 1 else f"MISSED by {(1 - ratio):.0%}"
            lines.append(f"\n{r.server} / oidc-provider: {ratio:.2f}x ({verdict}).")
    lines.append(
        "\nscrypt cost per password check on this machine now: "
        + ", ".join(f"N=2^{n.bit_length() - 1}: {ms:.1f} ms" for n, ms in scrypt_ms.items())
        + "."
    )
    if hot:
        lines += ["", *hot]
    return "\n".join(lines) + "\n"


def scrypt_cost(n: int) -> float:
    from posture_gateway.oidc.passwords import verify_password

    hashed = hash_password(PASSWORD, n=n)
    t0 = time.perf_counter()
    for _ in range(5):
        verify_password(PASSWORD, hashed)
    return (time.perf_counter() - t0) / 5 * 1000


def main() -> int:
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--threads", type=int, default=4, help="client threads per process")
    parser.add_argument(
        "--servers", default="granian,granian-1", help="ours: granian, granian-1, gunicorn-sync"
    )
    parser.add_argument("--server-threads", type=int, default=4, help="granian threads")
    parser.add_argument("--scrypt-n", type=int, default=2**10)
    parser.add_argument("--profile", type=int, default=100)
    parser.add_argument("--profile-top", type=int, default=12)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    args.load_before = os.getloadavg()[0]
    # SIGTERM unwinds like an exception, so the servers and PostgreSQL below are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    pg: PrivatePostgres | None = None
    server_url = os.environ.get("POSTURE_BENCH_DATABASE_URL")
    if not server_url:
        pg = PrivatePostgres()
        server_url = pg.start()
    workdir = Path(tempfile.mkdtemp(prefix="posture-bench-flow-"))
    peer: UpstreamIdp | None = None
    try:
        db_url = fresh_database(server_url)
        port = free_port()
        public_url = f"http://127.0.0.1:{port}"
        env = server_env(db_url, workdir / "data", public_url)
        env["POSTURE_CONFIG"] = str(write_config(workdir, args.scrypt_n))
        app = build_app(env)
        print(f"enrolling {args.devices} devices ...", flush=True)
        fleet = enroll_fleet(app, public_url, args.devices)
        add_directory_users(app)
        devices = tuple(
            (
                f"bench-user-{i % USERS}",
                d.device_id,
                d.key.private_key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            )
            for i, d in enumerate(fleet)
        )
        assert all(isinstance(d.key.private_key, ec.EllipticCurvePrivateKey) for d in fleet)
        ours = Target("ours", public_url, "/oauth/authorize", "/oauth/token", devices)

        results: list[FlowResult] = []
        for kind in [s.strip() for s in args.servers.split(",") if s.strip()]:
            print(f"ours: {kind} ...", flush=True)
            log_path = workdir / f"{kind}.log"
            with log_path.open("wb") as log:
                command = ours_command(kind, port, args.server_threads)
                proc = subprocess.Popen(
                    command, env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=log
                )
            try:
                wait_ready_readyz(public_url, proc)
                config = ("1 worker" if kind == "granian-1" else "2 workers") + (
                    f", {args.server_threads} threads" if kind.startswith("granian") else ""
                )
                results.append(run_target(f"ours ({kind})", config + ", PostgreSQL", ours, args))
            finally:
                stop(proc)
                text_log = log_path.read_text(errors="replace")
                if "Traceback" in text_log:
                    print(text_log[-3000:], file=sys.stderr)

        print("oidc-provider ...", flush=True)
        peer = UpstreamIdp(CLIENT_ID, CLIENT_SECRET, REDIRECT, account_id="bench-user-0").start()
        oidc = Target("peer", peer.issuer, "/auth", "/token")
        results.append(run_target("oidc-provider", "1 node process, in-memory", oidc, args))
        peer.stop()
        peer = None

        hot = profile(app, ours, args.profile, args.profile_top) if args.profile else []
        scrypt_ms = {n: scrypt_cost(n) for n in sorted({args.scrypt_n, 2**15})}
        section = markdown(results, hot, args, scrypt_ms)
        print(section)
        if args.record:
            with (ROOT / "docs" / "performance.md").open("a", encoding="utf-8") as fh:
                fh.write(section)
            print("recorded in docs/performance.md")
        app.extensions["posture"].core.close()
        return 1 if any(r.errors for r in results) else 0
    finally:
        if peer is not None:
            peer.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    sys.exit(main())
