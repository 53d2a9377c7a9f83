"""Benchmark: the OpenID provider's hot paths, in process (no HTTP server).

- signing with the key ring (loaded key objects): RS256 vs ES256 ID tokens;
- verifying one of our access tokens (signature + claims), and ``bearer_token`` (+ store);
- the token endpoint: code + PKCE -> access, refresh and ID token, through Flask's test client
  on SQLite (one code per exchange, prepared before the timed loop);
- one whole browser login (authorize, password with scrypt N=2^15, device check, code).

Targets (2-core reference machine, shared): RS256 ID token < 2 ms (key object, never PEM);
token endpoint p50 < 25 ms on SQLite (two commits: consume the code, record the tokens).
Measured once (noisy, other work running): RS256 ID token 0.58 ms, ES256 0.11 ms, access
token verify 0.28 ms, bearer_token 1.05 ms, token endpoint 17.8 ms, whole login ~100 ms plus
the scrypt check (~130 ms at N=2^15).
Run: ``.venv/bin/python bench/bench_oidc.py [--n 200]``; ends with the harness's JSON line.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _harness as h  # noqa: E402

from posture_gateway.app import create_app  # noqa: E402
from posture_gateway.oidc.passwords import hash_password  # noqa: E402
from posture_gateway.oidc.server import EXTENSION_KEY, OIDCProvider  # noqa: E402
from posture_gateway.settings import Settings  # noqa: E402
from tests.integration.oidc import conftest as fx  # noqa: E402


def _timed(fn: Callable[[], object], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


ROWS: list[list[object]] = []
METRICS: dict[str, float] = {}
TARGETS = {"id_token_rs256_p50_ms": {"max": 2.0}, "token_endpoint_p50_ms": {"max": 25.0}}


def _report(name: str, samples: list[float], key: str) -> None:
    s = h.summarize(samples)
    ROWS.append([name, s["p50"], s["p99"]])
    METRICS[f"{key}_p50_ms"] = s["p50"]
    METRICS[f"{key}_p99_ms"] = s["p99"]


def main() -> int:
    parser = h.base_parser((__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    if args.quick:
        args.n = 20
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        clients, users = fx.write_files(tmp_path)
        users.write_text(
            users.read_text().split("password_hash")[0]
            + f'password_hash: "{hash_password(fx.PASSWORD)}"\n'
            + "    email: alice@example.com\n"
        )
        settings = Settings.model_validate(
            {
                "data_dir": tmp_path / "data",
                "dev_mode": True,
                "public_url": fx.ISSUER,
                "oidc": {"clients_file": clients, "users_file": users, "max_failed_logins": 10**6},
            }
        )
        app = create_app(settings)
        provider: OIDCProvider = app.extensions[EXTENSION_KEY]
        provider.gate = fx.StubGate()
        provider.binding = provider.gate  # the token endpoint asks it whether the device is trusted
        provider.keys.rotate("ES256", overlap=settings.oidc.key_overlap)
        issuer = provider.issuer

        def id_token(alg: str) -> Callable[[], object]:
            return lambda: issuer.id_token(
                subject="u",
                audience="conf",
                nonce="n",
                auth_time=1,
                acr="a",
                amr=["pwd"],
                alg=alg,  # type: ignore[arg-type]
            )

        _report("ID token RS256 (loaded key)", _timed(id_token("RS256"), args.n), "id_token_rs256")
        _report("ID token ES256 (loaded key)", _timed(id_token("ES256"), args.n), "id_token_es256")
        access = issuer.access_token(subject="u", client_id="conf", scope="openid").token
        _report(
            "verify access token (JWT only)",
            _timed(lambda: issuer.verify_access_token(access), args.n),
            "verify_access_token",
        )

        browser = fx.Browser(app.test_client())
        login_samples: list[float] = []
        prepared: list[tuple[str, str]] = []
        for _ in range(args.n):
            start = time.perf_counter()
            code = browser.full_login()
            login_samples.append((time.perf_counter() - start) * 1000)
            prepared.append((code, browser.verifier))
        _report("whole browser login (scrypt, device, code)", login_samples, "browser_login")

        def exchange() -> object:
            code, verifier = prepared.pop()
            browser.verifier = verifier
            response = browser.exchange(code)
            assert response.status_code == 200, response.json
            return response

        samples = _timed(exchange, args.n)
        _report("token endpoint: code+PKCE -> AT, RT, ID token", samples, "token_endpoint")
        token = browser.exchange(browser.full_login()).json["access_token"]
        with app.app_context():
            _report(
                "bearer_token (JWT + grant store)",
                _timed(lambda: provider.bearer_token(token), args.n),
                "bearer_token",
            )
        app.extensions["posture"].core.close()
    h.print_table(
        "OpenID provider hot paths (in-process, SQLite)", ["step", "p50 ms", "p99 ms"], ROWS
    )
    return h.emit("oidc_hotpaths", {**METRICS, "n": args.n}, TARGETS)


if __name__ == "__main__":
    sys.exit(main())
