"""The one place outbound HTTP clients are built (upstream IdPs, Entra JWKS, HR systems, SSF).

Every outbound ``httpx.Client`` comes from :func:`make_client`, so timeouts, redirects, TLS and
the user agent are decided once, and tests inject a transport (``httpx.MockTransport`` only for
a cloud service we cannot reach; real local peers otherwise). :func:`fetch_json` is the one GET
of a JSON document (discovery, JWKS) with a size cap, mapping failures onto
:mod:`idp_connectors.errors`.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

import httpx

from idp_connectors.errors import UpstreamProtocolError, UpstreamUnavailable

__all__ = ["make_client", "fetch_json", "DEFAULT_TIMEOUT", "USER_AGENT", "MAX_DOCUMENT_BYTES"]

USER_AGENT = "posture-gateway/0.1"
# Connect fast, read within a login's patience; a slow IdP fails the login (closed), not hangs.
DEFAULT_TIMEOUT = httpx.Timeout(5.0, connect=3.0)
# Discovery documents and JWKS are a few KiB; refuse anything absurd before parsing it.
MAX_DOCUMENT_BYTES = 512 * 1024


def make_client(
    transport: httpx.BaseTransport | None = None,
    timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
    *,
    verify: ssl.SSLContext | str | bool = True,
    headers: Mapping[str, str] | None = None,
) -> httpx.Client:
    """A new outbound client: TLS verified, no redirects followed, bounded timeouts.

    ``transport`` replaces the network (tests); ``verify`` may be a CA bundle path or an
    ``SSLContext`` for a private CA. Redirects are never followed: a token endpoint that
    redirects is a misconfiguration or an attack, and is reported as such by the caller.
    """
    merged = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    merged.update(headers or {})
    return httpx.Client(
        transport=transport,
        timeout=timeout,
        verify=verify,
        headers=merged,
        follow_redirects=False,
        trust_env=False,  # proxies come from configuration, never from ambient env vars
    )


def fetch_json(client: httpx.Client, url: str) -> dict[str, Any]:
    """GET ``url`` and return its JSON object.

    Raises :class:`UpstreamUnavailable` on network errors, timeouts and 5xx, and
    :class:`UpstreamProtocolError` on any other non-200, an oversized body or a body that is
    not a JSON object.
    """
    try:
        response = client.get(url)
    except httpx.HTTPError as exc:
        raise UpstreamUnavailable(f"GET {url}: {type(exc).__name__}") from exc
    if response.status_code >= 500:
        raise UpstreamUnavailable(f"GET {url}: HTTP {response.status_code}")
    if response.status_code != 200:
        raise UpstreamProtocolError(f"GET {url}: HTTP {response.status_code}")
    if len(response.content) > MAX_DOCUMENT_BYTES:
        raise UpstreamProtocolError(f"GET {url}: document larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        document = response.json()
    except ValueError as exc:
        raise UpstreamProtocolError(f"GET {url}: not JSON") from exc
    if not isinstance(document, dict):
        raise UpstreamProtocolError(f"GET {url}: not a JSON object")
    return document
