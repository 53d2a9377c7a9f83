"""The demo's relying party: one OIDC code flow over HTTP against the running gateway.

What ``posture demo`` does to sign a user in, as a browser and a relying party would: GET
``/oauth/authorize`` (PKCE S256, state, nonce) for a client of the demo's clients file, POST the
password form, GET the device-check page (its nonce), have the device key sign the login proof,
POST it, continue past a warning, follow the redirects to the callback, redeem the code at
``/oauth/token`` and verify the ID token's signature against ``/jwks.json`` (pyjwt). A blocked
device ends on the remediation page with no code: :class:`LoginResult` then carries the page's
reasons (``data-reason`` items) and steps. No in-process gate call: the server decides.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import jwt

from posture_gateway.oidc.passwords import hash_client_secret, hash_password

__all__ = ["DemoRelyingParty", "LoginResult", "write_oidc_files"]

CLIENT_ID = "expenses"

_DEVICE_CONFIG = re.compile(
    r'<script type="application/json" id="device-config"[^>]*>(.*?)</script>', re.S
)
_REASON = re.compile(r'<li data-reason="([^"]*)"[^>]*>\s*<p class="what">(.*?)</p>', re.S)
_STEP_LIST = re.compile(r'<ol data-group="steps">(.*?)</ol>', re.S)
_TAG = re.compile(r"<[^>]+>")
_BADGE = re.compile(r'<span class="tag">.*?</span>', re.S)  # "critical", "needs IT"


def _text(fragment: str) -> str:
    return html.unescape(_TAG.sub("", _BADGE.sub("", fragment))).strip()


def _field(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    if match is None:
        raise ValueError(f"the page has no {name} field")
    return html.unescape(match.group(1))


def write_oidc_files(
    directory: Path, redirect_uri: str, users: dict[str, str]
) -> tuple[Path, Path, str, dict[str, str]]:
    """Write the clients file (one confidential client) and the users file.

    ``users`` maps user id -> username; returns (clients file, users file, client secret,
    username -> password). The passwords are generated for this run only.
    """
    secret = secrets.token_urlsafe(32)
    clients = directory / "clients.yaml"
    clients.write_text(
        "clients:\n"
        f"  - client_id: {CLIENT_ID}\n"
        "    name: Expenses\n"
        f'    client_secret_hash: "{hash_client_secret(secret)}"\n'
        f'    redirect_uris: ["{redirect_uri}"]\n'
        "    scopes: [openid, profile, email]\n"
        "    grant_types: [authorization_code]\n",
        encoding="utf-8",
    )
    passwords = {username: secrets.token_urlsafe(12) for username in users.values()}
    lines = ["users:"]
    for user_id, username in users.items():
        # A small scrypt cost keeps the demo fast; `posture users hash-password` uses the default.
        lines += [
            f"  - username: {username}",
            f"    user_id: {user_id}",
            f'    password_hash: "{hash_password(passwords[username], n=2**12)}"',
            f"    email: {user_id}",
        ]
    users_file = directory / "users.yaml"
    users_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    users_file.chmod(0o600)
    return clients, users_file, secret, passwords


@dataclass
class LoginResult:
    """How one sign-in ended."""

    outcome: str  # "allow", "warn" (continued) or "block"
    status: int  # HTTP status of the last gateway page
    code_issued: bool
    claims: dict[str, Any] = field(default_factory=dict)  # the verified ID token's claims
    reasons: list[tuple[str, str]] = field(default_factory=list)  # (code, message) when blocked
    steps: list[str] = field(default_factory=list)
    warned: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class DemoRelyingParty:
    """The expense app: a confidential client with client_secret_basic."""

    gateway: str
    redirect_uri: str
    client_secret: str

    def login(
        self,
        username: str,
        password: str,
        sign: Callable[[str, str], str],
    ) -> LoginResult:
        """Sign ``username`` in; ``sign(aud, nonce)`` returns the device's login proof."""
        verifier = secrets.token_urlsafe(48)
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        query = urlencode(
            {
                "response_type": "code",
                "client_id": CLIENT_ID,
                "redirect_uri": self.redirect_uri,
                "scope": "openid email",
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        with httpx.Client(timeout=15) as http:  # one browser: its cookies
            page = self._follow(http, http.get(f"{self.gateway}/oauth/authorize?{query}"))
            if page.status_code != 200 or 'name="password"' not in page.text:
                raise ValueError(f"no login page ({page.status_code})")
            posted = http.post(
                self.gateway + "/login/password",
                data={
                    "csrf_token": _field(page.text, "csrf_token"),
                    "username": username,
                    "password": password,
                },
            )
            device_page = self._follow(http, posted)
            found = _DEVICE_CONFIG.search(device_page.text)
            if device_page.status_code != 200 or found is None:
                raise ValueError(f"no device-check page ({device_page.status_code})")
            config = json.loads(html.unescape(found.group(1)))
            answer = http.post(
                self.gateway + "/login/device",
                data={
                    "csrf_token": _field(device_page.text, "csrf_token"),
                    "nonce": config["nonce"],
                    "proof": sign(config["aud"], config["nonce"]),
                },
            )
            outcome, warned = "allow", []
            if answer.status_code == 200 and 'data-outcome="warn"' in answer.text:
                outcome = "warn"
                warned = [(c, _text(m)) for c, m in _REASON.findall(answer.text)]
                answer = http.post(
                    self.gateway + "/login/continue",
                    data={
                        "csrf_token": _field(answer.text, "csrf_token"),
                        "ticket": _field(answer.text, "ticket"),
                    },
                )
            answer = self._follow(http, answer)
            location = answer.headers.get("Location", "")
            if not location.startswith(self.redirect_uri + "?"):
                steps = _STEP_LIST.search(answer.text)
                return LoginResult(
                    outcome="block" if 'data-outcome="block"' in answer.text else "error",
                    status=answer.status_code,
                    code_issued="code=" in location,
                    reasons=[(c, _text(m)) for c, m in _REASON.findall(answer.text)],
                    steps=[_text(s) for s in re.findall(r"<li>(.*?)</li>", steps.group(1), re.S)]
                    if steps
                    else [],
                )
            params = parse_qs(urlsplit(location).query)
            if params.get("state") != [state]:
                raise ValueError("the callback's state is not ours")
            claims = self._redeem(http, params["code"][0], verifier, nonce)
        return LoginResult(
            outcome=outcome, status=answer.status_code, code_issued=True, claims=claims,
            warned=warned,
        )  # fmt: skip

    def _follow(self, http: httpx.Client, response: httpx.Response) -> httpx.Response:
        """Follow the gateway's redirects, stopping at one to the relying party."""
        while response.status_code in (302, 303):
            target = urljoin(str(response.url), response.headers["Location"])
            if target.startswith(self.redirect_uri):
                break
            response = http.get(target)
        return response

    def _redeem(self, http: httpx.Client, code: str, verifier: str, nonce: str) -> dict[str, Any]:
        tokens = http.post(
            self.gateway + "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "code_verifier": verifier,
            },
            auth=(CLIENT_ID, self.client_secret),
        )
        if tokens.status_code != 200:
            raise ValueError(f"the token endpoint refused the code: {tokens.text[:300]}")
        id_token = tokens.json()["id_token"]
        jwks = jwt.PyJWKSet.from_dict(http.get(self.gateway + "/jwks.json").json())
        kid = jwt.get_unverified_header(id_token).get("kid")
        key = next(k for k in jwks.keys if k.key_id == kid)
        claims: dict[str, Any] = jwt.decode(
            id_token,
            key=key.key,
            algorithms=["RS256", "ES256"],
            audience=CLIENT_ID,
            issuer=self.gateway,
        )
        if claims.get("nonce") != nonce:
            raise ValueError("the ID token's nonce is not ours")
        return claims
