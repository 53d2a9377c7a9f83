"""Benchmark: complete OIDC authorization-code flows/s, ours vs npm ``oidc-provider``.

Both servers run for the whole measurement and are loaded in paired rounds (A B B A ...,
``--rounds`` x ``--seconds`` each), so they share the same time window and the same
machine noise; the ratio is our flows over theirs, pooled over the rounds.

One flow, as a headless client (no browser) does it:

- ours (``posture --config FILE serve``, its defaults, on PostgreSQL + Redis):
  ``GET /oauth/authorize`` (PKCE S256, nonce, state) -> ``GET /login`` ->
  ``POST /login/password`` -> ``GET /login/device`` (a device nonce) -> ``POST /login/device``
  with an ES256 device login proof the client signs for that nonce -> the real device gate
  (proof verify, posture, nested groups, policy evaluation, audit) -> redirect with the code
  (an outcome ``warn`` first shows its notice: ``POST /login/continue``) ->
  ``POST /oauth/token`` (client_secret_basic + PKCE) -> access token and an RS256 ID token;
- the peer: ``oidc-provider`` (tests/peers/node/upstream_idp.mjs, one node process, its
  in-memory adapter), started as the peer tests start it: ``GET /auth`` -> login and consent
  interactions answered without a UI -> code -> ``POST /token`` -> tokens (RS256 ID token).
  It checks no password and no device.

The same client code drives both (httpx, a fresh cookie jar per flow). Our users' passwords
are hashed with scrypt N=``--scrypt-n`` (default 2^10; the production default 2^15 costs
~150 ms per login by design and would measure the hash, not the protocol: its cost is
printed). Data: 20,000 devices, 10,000 users (200 of them with local passwords).
Measuring starts once our server is idle: after it starts it converges the fleet the seed
enrolled (``server_settle_s``), which is not the flow's cost.
Target: ours >= 1.0x oidc-provider. Run: ``make bench-oidc-flow`` (``--quick``).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402
import httpx  # noqa: E402
import jwt  # noqa: E402

from mdm_core.agent.keys import DeviceKey  # noqa: E402

BENCH = "oidc_flow"
CLIENT_ID = "bench-rp"
CLIENT_SECRET = "bench-rp-secret-" + "k" * 28  # noqa: S105 - a throwaway bench secret
PASSWORD = "bench-password-" + "p" * 12  # noqa: S105 - a throwaway bench password
REDIRECT = "http://127.0.0.1:9/callback"  # never fetched: the client reads the code from it
TARGETS = {"ratio_to_oidc_provider": {"min": 1.0}}

warned = [0]


@dataclass(frozen=True)
class Target:
    kind: str  # "ours" | "peer"
    base: str
    authorize_path: str
    token_path: str


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


def flow_op(params: Mapping[str, Any], proc: int, thread: int) -> Callable[[int], str]:
    target = Target(params["kind"], params["base"], params["authorize"], params["token"])
    devices: list[tuple[str, str, DeviceKey]] = []
    if target.kind == "ours":
        share = h.fleet_share(params["fleet"], params["procs"], proc)
        devices = [
            (d["user"], d["id"], DeviceKey(d["key"]))
            for d in share
            if d["user_index"] < params["login_users"]
        ]
    client = httpx.Client(base_url=target.base, timeout=30.0)

    def op(i: int) -> str:
        before = warned[0]
        one_flow(client, target, devices[(i * 7919) % len(devices)] if devices else None)
        return "warn-notice" if warned[0] != before else "direct"

    return op


class _Proc:
    """cpu_seconds() of a process tree the harness did not start (the node peer)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_seconds(self) -> float:
        return h.tree_cpu_seconds(self.pid)


def write_files(workdir: Path, users: int, scrypt_n: int) -> Path:
    from posture_gateway.oidc.passwords import hash_client_secret, hash_password

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
    pw = hash_password(PASSWORD, n=scrypt_n)  # one hash for all: the cost per check is the same
    users_file = workdir / "users.yaml"
    users_file.write_text(
        "users:\n"
        + "".join(
            f"  - username: {h.user_login(i)}\n    user_id: {h.user_id(i)}\n"
            f'    password_hash: "{pw}"\n    email: {h.user_login(i)}\n'
            for i in range(users)
        ),
        encoding="utf-8",
    )
    return h.write_config(
        workdir,
        {
            "oidc": {
                "clients_file": str(clients),
                "users_file": str(users_file),
                "max_failed_logins": 1_000_000,
            }
        },
    )


def wait_settled(server: h.Server, *, timeout: float, quiet_pct: float = 5.0) -> float:
    """Seconds until ``server`` is idle (under ``quiet_pct`` % of a core for 3 s in a row).

    After it starts, the server converges the fleet the seed enrolled (the commands for every
    device, their audit and outbox rows): minutes of CPU at 20,000 devices, which the first
    rounds of ours would otherwise count per flow. Measuring starts when that is done.
    """
    start = time.monotonic()
    quiet = 0
    while quiet < 3 and time.monotonic() - start < timeout:
        before = server.cpu_seconds()
        time.sleep(1.0)
        quiet = quiet + 1 if (server.cpu_seconds() - before) * 100 < quiet_pct else 0
    if quiet < 3:
        print(f"  server still busy after {timeout:.0f} s: measuring anyway", flush=True)
    return time.monotonic() - start


def scrypt_cost(n: int) -> float:
    from posture_gateway.oidc.passwords import hash_password, verify_password

    hashed = hash_password(PASSWORD, n=n)
    t0 = time.perf_counter()
    for _ in range(3):
        verify_password(PASSWORD, hashed)
    return (time.perf_counter() - t0) / 3 * 1000


def one_pass(args: Any, durable: bool) -> dict[str, Any]:
    from tests.peers.upstream_idp import UpstreamIdp

    login_users = min(args.users, 200)
    with h.Services(durable=durable) as services, h.workdir("posture-bench-flow-") as wd:
        db_url = h.fresh_database(services.server_url)
        port = h.free_port()
        url = f"http://127.0.0.1:{port}"
        env = h.server_env(db_url, wd / "data", url, services.redis_url)
        config = write_files(wd, login_users, args.scrypt_n)
        env["POSTURE_CONFIG"] = str(config)
        app = h.build_app(env)
        print(f"[{services.label}] seeding ...", flush=True)
        fleet = h.seed(app, url, wd, devices=args.devices, users=args.users)
        app.extensions["posture"].core.close()
        print("  " + fleet.describe(), flush=True)
        peer = UpstreamIdp(CLIENT_ID, CLIENT_SECRET, REDIRECT, account_id=h.user_id(0)).start()
        server = h.Server.posture_serve(env, config, port, wd)
        try:
            with server:
                assert peer.process is not None
                ours = {
                    "kind": "ours",
                    "base": url,
                    "authorize": "/oauth/authorize",
                    "token": "/oauth/token",
                    "fleet": str(fleet.keys_file),
                    "procs": args.procs,
                    "login_users": login_users,
                }
                theirs = {
                    "kind": "peer",
                    "base": peer.issuer,
                    "authorize": "/auth",
                    "token": "/token",
                    "procs": args.procs,
                }
                flow_op(ours, 0, 0)(0)  # each fails loudly if broken
                flow_op(theirs, 0, 0)(0)
                settle_s = wait_settled(server, timeout=args.settle_timeout)
                print(f"  server settled (seeded fleet converged) in {settle_s:.0f} s", flush=True)
                pair = [("ours", ours, server), ("oidc-provider", theirs, _Proc(peer.process.pid))]
                common = {"procs": args.procs, "threads": args.threads}
                for _name, params, srv in pair:
                    h.run_load(
                        "warm-up", flow_op, params, seconds=args.warmup, server=srv, **common
                    )  # type: ignore[arg-type]
                loads: list[h.Load] = []
                for r in range(args.rounds):
                    for name, params, srv in pair if r % 2 == 0 else pair[::-1]:
                        print(f"  round {r + 1}/{args.rounds}: {name} ...", flush=True)
                        loads.append(
                            h.run_load(
                                name,
                                flow_op,
                                params,
                                seconds=args.seconds,
                                server=srv,  # type: ignore[arg-type]
                                db_pid=services.postmaster_pid(),
                                **common,
                            )
                        )
        finally:
            peer.stop()
    h.print_table(f"OIDC code flows [{services.label}]", h.Load.COLUMNS, [x.row() for x in loads])
    for x in loads:
        if x.first_error:
            print(f"  first error ({x.label}): {x.first_error}")

    def pooled(name: str) -> tuple[float, list[float], int]:
        mine = [x for x in loads if x.label == name]
        secs = sum(x.seconds for x in mine)
        return (
            sum(x.ops for x in mine) / secs if secs else 0.0,
            [v for x in mine for v in x.latencies_ms],
            sum(x.errors for x in mine),
        )

    ours_rate, ours_lat, ours_err = pooled("ours")
    peer_rate, peer_lat, peer_err = pooled("oidc-provider")
    per_round = [round(x.rate, 1) for x in loads]
    warn = sum(x.extra["outcomes"].get("warn-notice", 0) for x in loads if x.label == "ours")
    return {
        "postgres": services.label,
        "ours_flows_per_s": ours_rate,
        "oidc_provider_flows_per_s": peer_rate,
        "ratio_to_oidc_provider": ours_rate / peer_rate if peer_rate else 0.0,
        "ours_p50_ms": h.percentile(ours_lat, 50),
        "ours_p99_ms": h.percentile(ours_lat, 99),
        "oidc_provider_p50_ms": h.percentile(peer_lat, 50),
        "oidc_provider_p99_ms": h.percentile(peer_lat, 99),
        "rates_per_round": per_round,
        "ours_via_warn_notice": warn,
        "errors": ours_err + peer_err,
        "client_bound": any(x.client_bound for x in loads),
        "client_cpu_pct_max": max(max(x.client_cpu_pct) for x in loads),
        "ours_server_cpu_pct": h.mean([x.server_cpu_pct for x in loads if x.label == "ours"]),
        "oidc_provider_cpu_pct": h.mean(
            [x.server_cpu_pct for x in loads if x.label == "oidc-provider"]
        ),
        "machine_busy_pct": h.mean([x.machine_busy_pct for x in loads]),
        "ours_server_cpu_ms_per_flow": h.mean(
            [x.server_cpu_ms_per_op for x in loads if x.label == "ours"]
        ),
        "oidc_provider_cpu_ms_per_flow": h.mean(
            [x.server_cpu_ms_per_op for x in loads if x.label == "oidc-provider"]
        ),
        "server_settle_s": settle_s,
        "scrypt_n": args.scrypt_n,
        "scrypt_ms": scrypt_cost(args.scrypt_n),
        "scrypt_ms_production_2_15": scrypt_cost(2**15),
        "devices": fleet.devices,
        "users": fleet.users,
        "client": f"{args.procs} processes x {args.threads} threads (httpx), closed loop",
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
    parser.add_argument("--threads", type=int, default=4, help="client threads per process")
    parser.add_argument("--rounds", type=int, default=4, help="paired rounds (A B B A)")
    parser.add_argument("--seconds", type=float, default=8.0, help="per server per round")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--scrypt-n", type=int, default=2**10)
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=900.0,
        help="longest wait (s) for the server to finish converging the seeded fleet",
    )
    args = parser.parse_args()
    if args.quick:
        args.devices, args.users, args.rounds, args.seconds, args.warmup = 600, 300, 2, 2.0, 1.0
    print(h.machine_line())
    metrics = h.durable_then_relaxed(one_pass, args)
    return h.emit(BENCH, metrics, TARGETS)


if __name__ == "__main__":
    sys.exit(main())
