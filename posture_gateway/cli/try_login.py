"""``posture try-login``: a minimal local relying party, to check a deployment by hand.

It does one real authorization code flow against the gateway, as a confidential client
would: the discovery document, an authorization URL with PKCE (S256), ``state`` and
``nonce``; one callback received on the loopback redirect URI (a tiny :mod:`http.server`
listening on its host and port); the code redeemed at the token endpoint with
``client_secret_basic``; the ID token verified with the JWKS (signature with an algorithm
the discovery document announces — never the token header's word alone — issuer, audience,
expiry, nonce). It prints the claims (the posture claims highlighted) and the outcome.

Exit 0 on a verified sign-in; 1 on a refusal (an ``error`` callback such as
``access_denied``, a refused code) or any failure, with one line through the CLI frame
(:mod:`posture_gateway.cli.base`); 2 on a usage mistake.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
import sys
import threading
import time
import webbrowser
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import click
import httpx

from idp_connectors.errors import UpstreamError
from idp_connectors.http import fetch_json, make_client
from mdm_core.support.durations import format_duration
from posture_gateway.cli.base import DURATION, ConfigProblem, RuntimeProblem, config_file_option
from posture_gateway.oidc.claims import POSTURE_CLAIMS
from posture_gateway.settings import load_settings

__all__ = ["try_login_cmd", "LoopbackRedirect", "parse_loopback_redirect", "pkce_pair"]

SECRET_ENV = "POSTURE_TRY_LOGIN_CLIENT_SECRET"  # noqa: S105 (a variable name)
_HTTP_TIMEOUT = 15.0


@dataclass(frozen=True)
class LoopbackRedirect:
    """Where the command listens for the one callback."""

    uri: str
    host: str
    port: int
    path: str


def parse_loopback_redirect(uri: str) -> LoopbackRedirect:
    """``uri`` as a loopback ``http://`` redirect URI with a port, or ``click.BadParameter``."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if parts.scheme != "http" or parts.query or parts.fragment or parts.username:
        raise click.BadParameter(
            f"{uri!r}: must be a plain http:// loopback URI (e.g. http://127.0.0.1:8080/callback)",
            param_hint="--redirect-uri",
        )
    loopback = host == "localhost"
    try:
        loopback = loopback or ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        port = parts.port
    except ValueError:
        port = None
    if not loopback or not port:
        raise click.BadParameter(
            f"{uri!r}: the host must be a loopback address with an explicit port "
            "(this command listens there)",
            param_hint="--redirect-uri",
        )
    return LoopbackRedirect(uri=uri, host=host, port=port, path=parts.path or "/")


def pkce_pair() -> tuple[str, str]:
    """A PKCE ``(code_verifier, code_challenge)`` with the S256 method (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)  # 64 characters of the unreserved set
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


# ---- the one callback --------------------------------------------------------------------


class _CallbackServer(HTTPServer):
    expected_path: str
    received: dict[str, str] | None = None


class _CallbackHandler(BaseHTTPRequestHandler):
    server: _CallbackServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        parts = urlsplit(self.path)
        if parts.path != self.server.expected_path or self.server.received is not None:
            self._answer(404, "Not the callback.")
            return
        query = parse_qs(parts.query, keep_blank_values=True)
        self.server.received = {k: v[0] for k, v in query.items() if v}
        self._answer(200, "posture try-login received the callback: see the terminal.")

    def _answer(self, status: int, text: str) -> None:
        body = f"<!doctype html><title>posture try-login</title><p>{text}</p>\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return  # the query holds the code: never logged


def _listen(redirect: LoopbackRedirect) -> _CallbackServer:
    try:
        server = _CallbackServer((redirect.host, redirect.port), _CallbackHandler)
    except OSError as exc:
        raise RuntimeProblem(
            f"cannot listen on {redirect.host}:{redirect.port} for --redirect-uri: "
            f"{exc.strerror or exc}"
        ) from exc
    server.expected_path = redirect.path
    return server


def _wait_for_callback(server: _CallbackServer, timeout: timedelta) -> dict[str, str]:
    deadline = time.monotonic() + timeout.total_seconds()
    server.timeout = 0.5
    while server.received is None:
        if time.monotonic() >= deadline:
            raise RuntimeProblem(
                f"no callback within {format_duration(timeout)} (--timeout); nothing signed in"
            )
        server.handle_request()
    return server.received


# ---- the provider ------------------------------------------------------------------------


def _get_json(url: str, what: str) -> dict[str, Any]:
    """A JSON document through the project's one outbound client (TLS verified, no
    redirects, bounded size): :func:`idp_connectors.http.fetch_json`."""
    try:
        with make_client(timeout=_HTTP_TIMEOUT) as client:
            return fetch_json(client, url)
    except UpstreamError as exc:
        raise RuntimeProblem(f"{what}: {exc}") from exc


def _discover(server: str) -> dict[str, Any]:
    issuer = server.rstrip("/")
    doc = _get_json(issuer + "/.well-known/openid-configuration", "discovery document")
    if doc.get("issuer") != issuer:
        raise RuntimeProblem(
            f"discovery document names issuer {doc.get('issuer')!r}, not {issuer!r} (--server)"
        )
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(doc.get(key), str):
            raise RuntimeProblem(f"discovery document has no {key}")
    if "S256" not in (doc.get("code_challenge_methods_supported") or []):
        raise RuntimeProblem("the provider does not announce PKCE S256")
    return doc


def _signing_algs(doc: dict[str, Any]) -> list[str]:
    algs = [
        a
        for a in doc.get("id_token_signing_alg_values_supported") or []
        if isinstance(a, str) and a != "none" and not a.startswith("HS")
    ]
    if not algs:
        raise RuntimeProblem("discovery announces no asymmetric id_token signing algorithm")
    return algs


def _redeem(
    doc: dict[str, Any],
    *,
    code: str,
    verifier: str,
    client_id: str,
    secret: str,
    redirect_uri: str,
) -> dict[str, Any]:
    # client_secret_basic: each part form-urlencoded first (RFC 6749 2.3.1).
    auth = httpx.BasicAuth(quote(client_id, safe=""), quote(secret, safe=""))
    try:
        with make_client(timeout=_HTTP_TIMEOUT) as client:
            response = client.post(
                doc["token_endpoint"],
                auth=auth,
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": redirect_uri,
                    "code_verifier": verifier,
                },
            )
    except httpx.HTTPError as exc:
        raise RuntimeProblem(f"token endpoint: {type(exc).__name__}") from exc
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if response.status_code != 200:
        error = body.get("error") or f"HTTP {response.status_code}"
        detail = body.get("error_description")
        raise RuntimeProblem(
            f"refused at the token endpoint: {error}" + (f": {detail}" if detail else "")
        )
    if not isinstance(body.get("id_token"), str):
        raise RuntimeProblem("the token endpoint returned no id_token")
    return body


def _verify_id_token(
    doc: dict[str, Any], id_token: str, *, client_id: str, nonce: str
) -> dict[str, Any]:
    import jwt

    algs = _signing_algs(doc)
    try:
        header = jwt.get_unverified_header(id_token)  # only to pick the key; checked below
    except jwt.PyJWTError as exc:
        raise RuntimeProblem(f"ID token is malformed: {exc}") from exc
    if header.get("alg") not in algs:
        raise RuntimeProblem(f"ID token alg {header.get('alg')!r} is not announced {algs}")
    jwks = _get_json(doc["jwks_uri"], "JWKS")
    keys = [k for k in jwks.get("keys") or [] if isinstance(k, dict)]
    kid = header.get("kid")
    candidates = [k for k in keys if kid is None or k.get("kid") == kid]
    candidates = [k for k in candidates if k.get("use", "sig") == "sig"]
    candidates = [k for k in candidates if k.get("alg", header["alg"]) == header["alg"]]
    if len(candidates) != 1:
        raise RuntimeProblem(f"ID token key {kid!r}: {len(candidates)} matching keys in the JWKS")
    try:
        key = jwt.PyJWK(candidates[0], algorithm=header["alg"])
        claims: dict[str, Any] = jwt.decode(
            id_token,
            key=key,
            algorithms=algs,
            audience=client_id,
            issuer=doc["issuer"],
            options={"require": ["iss", "aud", "exp", "iat", "sub", "nonce"]},
            leeway=30,
        )
    except jwt.PyJWTError as exc:
        raise RuntimeProblem(f"ID token rejected: {exc}") from exc
    if not hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
        raise RuntimeProblem("ID token rejected: the nonce is not the one sent")
    azp = claims.get("azp")
    if azp is not None and azp != client_id:
        raise RuntimeProblem(f"ID token rejected: azp {azp!r} is not {client_id!r}")
    return claims


# ---- output ------------------------------------------------------------------------------


def _claims_table(claims: dict[str, Any]) -> Any:
    import json

    from rich.table import Table

    table = Table(title="ID token claims (verified)", show_lines=False)
    table.add_column("claim", no_wrap=True)
    table.add_column("value", overflow="fold")
    for name in sorted(claims, key=lambda n: (n not in POSTURE_CLAIMS, n)):
        value = claims[name]
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        style = "bold yellow" if name in POSTURE_CLAIMS else None
        table.add_row(name, text, style=style)
    return table


def _default_server() -> str:

    return load_settings(config_file_option()).public_url


@click.command("try-login")
@click.option("--server", metavar="URL", help="The gateway (default: the configured public_url).")
@click.option("--client-id", default="example-app", show_default=True)
@click.option(
    "--client-secret",
    envvar=SECRET_ENV,
    help=f"The client's secret (or {SECRET_ENV}; asked for, hidden, on a terminal).",
)
@click.option(
    "--redirect-uri",
    default="http://127.0.0.1:8080/callback",
    show_default=True,
    help="A loopback http:// URI registered for the client; this command listens on it.",
)
@click.option("--scope", default="openid profile email", show_default=True)
@click.option(
    "--timeout",
    type=DURATION,
    default="5m",
    show_default=True,
    help="How long to wait for the callback (30s, 2m, 1h).",
)
@click.option("--no-browser", is_flag=True, help="Only print the authorization URL.")
def try_login_cmd(
    server: str | None,
    client_id: str,
    client_secret: str | None,
    redirect_uri: str,
    scope: str,
    timeout: timedelta,
    no_browser: bool,
) -> None:
    """Sign in once through the gateway as a local relying party and show the ID token."""
    from rich.console import Console
    from rich.markup import escape

    redirect = parse_loopback_redirect(redirect_uri)
    if "openid" not in scope.split():
        raise click.BadParameter("must include openid", param_hint="--scope")
    if not client_secret:
        if not sys.stdin.isatty():
            raise ConfigProblem(f"--client-secret is required (or set {SECRET_ENV})")
        client_secret = click.prompt("client secret", hide_input=True)
    if server is None:
        server = _default_server()
    if not server.startswith(("https://", "http://")):
        raise click.BadParameter(f"{server!r}: must be an http(s) URL", param_hint="--server")
    doc = _discover(server)
    _signing_algs(doc)  # refuse before the user signs in
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect.uri,
            "scope": scope,
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    endpoint = doc["authorization_endpoint"]
    authorize_url = endpoint + ("&" if "?" in endpoint else "?") + query
    console = Console()
    callback_server = _listen(redirect)  # listening before anyone can follow the URL
    try:
        console.print("Open this URL to sign in:", highlight=False)
        click.echo(authorize_url)  # one unwrapped line, to copy
        sys.stdout.flush()
        if not no_browser:
            threading.Thread(target=_open_browser, args=(authorize_url,), daemon=True).start()
        wait = format_duration(timeout)
        console.print(
            f"waiting for the callback on {escape(redirect.uri)} (up to {wait})",
            highlight=False,
        )
        callback = _wait_for_callback(callback_server, timeout)
    finally:
        callback_server.server_close()
    if not hmac.compare_digest(callback.get("state", "").encode(), state.encode()):
        raise RuntimeProblem("callback refused: its state is not the one sent (forged or stale)")
    if "error" in callback:
        detail = callback.get("error_description")
        raise RuntimeProblem(
            f"sign-in refused: {callback['error']}" + (f": {detail}" if detail else "")
        )
    code = callback.get("code")
    if not code:
        raise RuntimeProblem("callback refused: it carries neither a code nor an error")
    tokens = _redeem(
        doc,
        code=code,
        verifier=verifier,
        client_id=client_id,
        secret=client_secret,
        redirect_uri=redirect.uri,
    )
    claims = _verify_id_token(doc, tokens["id_token"], client_id=client_id, nonce=nonce)
    console.print(_claims_table(claims))
    outcome = claims.get("posture_outcome", "(not released)")
    click.echo(f"verified sign-in: sub={claims['sub']} posture_outcome={outcome}")


def _open_browser(url: str) -> None:
    try:
        webbrowser.open(url)
    except Exception:  # noqa: BLE001 (no browser: the printed URL is enough)
        return
