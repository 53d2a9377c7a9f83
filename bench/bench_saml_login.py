"""Benchmark: complete SP-initiated SAML logins/s end to end against ``posture serve``.

One login, as a headless client (no browser) does it, on PostgreSQL + Redis:

``GET /saml/sso?SAMLRequest=...`` (HTTP-Redirect, a fresh AuthnRequest ID: parsed, the SP
looked up, the ACS resolved against its metadata, the ID spent in the shared replay store,
a login transaction started) -> ``GET /login`` -> ``POST /login/password`` (scrypt N=2^10,
as bench_oidc_flow) -> ``GET /login/device`` (a device nonce) -> ``POST /login/device`` with
an ES256 device login proof the client signs for that nonce (the real device gate: proof,
posture, groups, policies, audit) -> (a warn verdict shows its notice:
``POST /login/continue``) -> the auto-submitting page with the signed SAML Response (RSA-SHA256
over the Assertion and the Response, with the posture attributes) -> the client verifies it as
an SP does (:func:`posture_gateway.saml.protocol.response_verifier.verify_response` with the
certificate from ``/saml/metadata``: signatures, Issuer, Audience, Recipient, InResponseTo).
An independent check first: one Response is validated by npm ``@node-saml/node-saml``.

Reports logins/s, p50/p99 of the whole login, server CPU per login, and where the time goes:
a sequential sample (one login at a time, the server otherwise idle) timing each step.
Target: >= 20 logins/s (noisy, shared 2-core machine; each login is 6-7 requests, one scrypt
hash, one ES256 verify, two RSA-2048 signatures). Run: ``make bench-saml-login``
(``--quick``). saml-core's ``bench/bench_saml_sign.py`` has the in-process signing figure.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402
import httpx  # noqa: E402
from bench_oidc_flow import wait_settled  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402

from mdm_core.agent.keys import DeviceKey  # noqa: E402

BENCH = "saml_login"
SP_ID = "urn:bench:saml-sp"
#: The SP's ACS: node-saml's (it serves it; the load's clients read the answer form instead).
ACS = ["http://127.0.0.1:9/acs"]
PASSWORD = "bench-password-" + "p" * 12  # noqa: S105 - a throwaway bench password
TARGETS = {"logins_per_s": {"min": 20.0}}
_FORM = re.compile(r'name="SAMLResponse" value="([^"]+)"')
_UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
PHASES = ("sso", "login_page", "password", "device_page", "device_post", "verify")

warned = [0]


def _field(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    if match is None:
        raise RuntimeError(f"no {name} in page: {html[:300]}")
    return match.group(1)


def _cert(base: str) -> x509.Certificate:
    metadata = httpx.get(base + "/saml/metadata", timeout=10).text
    match = re.search(r"X509Certificate>([^<]+)<", metadata)
    if match is None:
        raise RuntimeError("no certificate in /saml/metadata")
    return x509.load_der_x509_certificate(base64.b64decode(match.group(1)))


def one_login(
    client: httpx.Client,
    base: str,
    device: tuple[str, str, DeviceKey],
    cert: x509.Certificate,
    timings: dict[str, float] | None = None,
) -> str:
    """One complete SP-initiated login; returns the verified Response's base64. Raises on
    any deviation. ``timings`` gets the seconds of each phase."""
    from posture_gateway.saml.protocol.response_verifier import verify_response
    from tests.e2e.saml_login import authn_request_xml, redirect_url

    username, device_id, key = device
    marks = [time.perf_counter()]

    def mark(name: str) -> None:
        marks.append(time.perf_counter())
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + marks[-1] - marks[-2]

    client.cookies.clear()
    request_id = "_b" + secrets.token_hex(16)
    sso = base + "/saml/sso"
    xml = authn_request_xml(issuer=SP_ID, destination=sso, acs_url=ACS[0], request_id=request_id)
    response = client.get(redirect_url(sso, xml, relay_state="r"))
    if response.status_code != 303:
        raise RuntimeError(f"sso {response.status_code}: {response.text[:300]}")
    # /saml/sso -> /saml/sso/continue (a top-level GET: the SSO session cookie is read
    # there) -> the login page.
    location = response.headers["location"]
    for _ in range(3):
        if "/saml/sso/continue" not in location:
            break
        response = client.get(urljoin(base, location))
        if response.status_code not in (302, 303):
            raise RuntimeError(f"sso continue {response.status_code}: {response.text[:300]}")
        location = response.headers["location"]
    mark("sso")
    page = client.get(urljoin(base, location))
    mark("login_page")
    response = client.post(
        "/login/password",
        data={"csrf_token": _field(page.text, "csrf_token"), "username": username,
              "password": PASSWORD},
    )  # fmt: skip
    if response.status_code != 303:
        raise RuntimeError(f"password {response.status_code}: {response.text[:300]}")
    mark("password")
    page = client.get("/login/device")
    device_nonce = _field(page.text, "nonce")
    mark("device_page")
    proof = key.login_proof(device_id, base, device_nonce)  # ES256, the agent's way
    response = client.post(
        "/login/device",
        data={"csrf_token": _field(page.text, "csrf_token"), "nonce": device_nonce,
              "proof": proof},
    )  # fmt: skip
    if response.status_code == 200 and 'name="ticket"' in response.text:
        response = client.post(
            "/login/continue",
            data={"csrf_token": _field(response.text, "csrf_token"),
                  "ticket": _field(response.text, "ticket")},
        )  # fmt: skip
        warned[0] += 1
    found = _FORM.search(response.text)
    if response.status_code != 200 or found is None:
        raise RuntimeError(f"device {response.status_code}: {response.text[:300]}")
    mark("device_post")
    verify_response(
        base64.b64decode(found.group(1)),
        idp_certs=[cert],
        expected_issuer=base + "/saml/metadata",
        expected_audience=SP_ID,
        expected_recipient=ACS[0],
        expected_in_response_to=request_id,
        now=datetime.now(UTC),
    )
    mark("verify")
    return found.group(1)


def login_op(params: Mapping[str, Any], proc: int, thread: int) -> Callable[[int], str]:
    share = h.fleet_share(params["fleet"], params["procs"], proc)
    devices = [
        (d["user"], d["id"], DeviceKey(d["key"]))
        for d in share
        if d["user_index"] < params["login_users"]
    ]
    client = httpx.Client(base_url=params["base"], timeout=30.0)
    cert = _cert(params["base"])

    def op(i: int) -> str:
        before = warned[0]
        one_login(client, params["base"], devices[(i * 7919) % len(devices)], cert)
        return "warn-notice" if warned[0] != before else "direct"

    return op


def write_files(workdir: Path, users: int, scrypt_n: int) -> Path:
    from posture_gateway.oidc.passwords import hash_password

    pw = hash_password(PASSWORD, n=scrypt_n)
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
    sp_file = workdir / "sp-metadata.xml"
    sp_file.write_text(
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        f'entityID="{SP_ID}"><md:SPSSODescriptor '
        'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        '<md:AssertionConsumerService index="0" isDefault="true" '
        f'Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{ACS[0]}"/>'
        "</md:SPSSODescriptor></md:EntityDescriptor>",
        encoding="utf-8",
    )
    return h.write_config(
        workdir,
        {
            "oidc": {"users_file": str(users_file), "max_failed_logins": 1_000_000},
            "saml": {
                "service_providers": [
                    {
                        "metadata_file": str(sp_file),
                        "nameid_attribute": "username",
                        "nameid_format": _UNSPECIFIED,
                    }
                ]
            },
        },
    )


def node_saml_accepts(sp: Any, base: str, sample: str) -> bool:
    """The independent check: npm node-saml validates one Response with our certificate from
    ``/saml/metadata`` (signatures, Issuer, Audience, Recipient = its ACS, timestamps;
    InResponseTo off: the bench client, not node-saml, made the request)."""
    pem = _cert(base).public_bytes(serialization.Encoding.PEM)
    sp.configure(
        idp_cert=pem.decode(),
        sso_url=base + "/saml/sso",
        idp_entity_id=base + "/saml/metadata",
        in_response_to="never",
    )
    result = sp.validate(sample)
    if not result.get("ok"):
        print(f"  node-saml refused the Response: {result}", flush=True)
    return bool(result.get("ok"))


def one_pass(args: Any, durable: bool) -> dict[str, Any]:
    from tests.e2e.saml_sp import NodeSamlSp

    login_users = min(args.users, 200)
    with (
        h.Services(durable=durable) as services,
        h.workdir("posture-bench-saml-") as wd,
        NodeSamlSp(entity_id=SP_ID) as node_sp,
    ):
        ACS[0] = node_sp.acs_url
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
        server = h.Server.posture_serve(env, config, port, wd)
        with server:
            params = {
                "base": url,
                "fleet": str(fleet.keys_file),
                "procs": args.procs,
                "login_users": login_users,
            }
            devices = [
                (d["user"], d["id"], DeviceKey(d["key"]))
                for d in h.fleet_share(params["fleet"], 1, 0)
                if d["user_index"] < login_users
            ]
            cert = _cert(url)
            with httpx.Client(base_url=url, timeout=30.0) as client:
                sample = one_login(client, url, devices[0], cert)  # fails loudly if broken
            independent = node_saml_accepts(node_sp, url, sample)
            # After it starts the server converges the seeded fleet (minutes of CPU at
            # thousands of devices): measure once it is idle, as bench_oidc_flow does.
            settle_s = wait_settled(server, timeout=args.settle_timeout)
            print(f"  server settled (seeded fleet converged) in {settle_s:.0f} s", flush=True)
            common = {"procs": args.procs, "threads": args.threads}
            h.run_load("warm-up", login_op, params, seconds=args.warmup, server=server, **common)
            loads = [
                h.run_load(
                    "saml logins",
                    login_op,
                    params,
                    seconds=args.seconds,
                    server=server,
                    db_pid=services.postmaster_pid(),
                    **common,
                )
                for _ in range(args.rounds)
            ]
            # Where the time goes: one login at a time, the server otherwise idle.
            timings: dict[str, float] = {}
            with httpx.Client(base_url=url, timeout=30.0) as client:
                for i in range(args.sample):
                    one_login(client, url, devices[i % len(devices)], cert, timings)
    h.print_table(f"SAML logins [{services.label}]", h.Load.COLUMNS, [x.row() for x in loads])
    phases = {f"phase_{k}_ms": timings.get(k, 0.0) / max(args.sample, 1) * 1000 for k in PHASES}
    h.print_table(
        "where one login's time goes (sequential sample, client-observed ms)",
        ["phase", "ms"],
        [[k, phases[f"phase_{k}_ms"]] for k in PHASES],
    )
    for x in loads:
        if x.first_error:
            print(f"  first error: {x.first_error}")
    secs = sum(x.seconds for x in loads)
    latencies = [v for x in loads for v in x.latencies_ms]
    return {
        "postgres": services.label,
        "logins_per_s": sum(x.ops for x in loads) / secs if secs else 0.0,
        "p50_ms": h.percentile(latencies, 50),
        "p99_ms": h.percentile(latencies, 99),
        "errors": sum(x.errors for x in loads),
        "rates_per_round": [round(x.rate, 1) for x in loads],
        "server_cpu_ms_per_login": h.mean([x.server_cpu_ms_per_op for x in loads]),
        "server_cpu_pct": h.mean([x.server_cpu_pct for x in loads]),
        "machine_busy_pct": h.mean([x.machine_busy_pct for x in loads]),
        "client_bound": any(x.client_bound for x in loads),
        "via_warn_notice": sum(x.extra["outcomes"].get("warn-notice", 0) for x in loads),
        "node_saml_accepts": independent,
        "server_settle_s": settle_s,
        **phases,
        "scrypt_n": args.scrypt_n,
        "devices": fleet.devices,
        "users": fleet.users,
        "client": f"{args.procs} processes x {args.threads} threads (httpx), closed loop",
        "server": server.description,
        "note": "noisy, shared machine",
    }


def main() -> int:
    logging.basicConfig(level=logging.ERROR)
    parser = h.base_parser((__doc__ or "").split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=5_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--threads", type=int, default=4, help="client threads per process")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="per round")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--sample", type=int, default=20, help="sequential logins timed")
    parser.add_argument("--scrypt-n", type=int, default=2**10)
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=900.0,
        help="longest wait (s) for the server to finish converging the seeded fleet",
    )
    args = parser.parse_args()
    if args.quick:
        args.devices, args.users, args.rounds, args.seconds, args.warmup = 400, 200, 1, 3.0, 1.0
        args.sample = 5
    print(h.machine_line())
    metrics = h.durable_then_relaxed(one_pass, args)
    return h.emit(BENCH, metrics, TARGETS)


if __name__ == "__main__":
    sys.exit(main())
