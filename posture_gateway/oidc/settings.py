"""Settings of the OpenID provider: the ``oidc`` section of the gateway ``Settings``.

Everything here is read once at start-up and validated by pydantic. Lifetimes are
``timedelta`` (pydantic accepts ISO 8601 durations such as ``PT10M`` or plain seconds).
Files named here (clients, users) are validated in full when the app starts; an invalid file
stops the process with ``file:line: what is wrong``.
"""

from __future__ import annotations

from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from pydantic import ConfigDict, Field, SecretStr

from mdm_core.agent.loopback import DEFAULT_PORT
from mdm_core.support.durations import DurationsModel

__all__ = ["OIDCSettings"]


class OIDCSettings(DurationsModel):
    """The ``oidc`` section: issuer, relying parties, local users, lifetimes, signing keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Issuer identifier; None means ``Settings.public_url``. No trailing slash.
    issuer: str | None = None
    # Relying parties (YAML); None means no client is registered (every authorize is refused).
    clients_file: Path | None = None
    # Local password users (YAML); None means local password login is off.
    users_file: Path | None = None
    code_ttl: timedelta = timedelta(minutes=2)
    id_token_ttl: timedelta = timedelta(minutes=10)
    access_token_ttl: timedelta = timedelta(minutes=10)
    refresh_token_ttl: timedelta = timedelta(hours=12)
    # How long a login transaction (login page -> device check -> code) may take.
    login_ttl: timedelta = timedelta(minutes=10)
    # How long a device-check nonce is valid.
    device_nonce_ttl: timedelta = timedelta(minutes=2)
    # Loopback port of the local agent the device-check page asks for a login proof.
    agent_port: int = DEFAULT_PORT
    # Signing keys: encrypted at rest in data_dir/oidc-keys with this passphrase (required
    # outside dev mode), or a fixed key + certificate from PEM files (rotation then happens
    # outside the gateway).
    key_passphrase: SecretStr | None = None
    signing_key_path: Path | None = None
    signing_cert_path: Path | None = None
    # After a rotation the previous key stays published (for verifiers) this long.
    key_overlap: timedelta = timedelta(days=1)
    # A device certificate forwarded by an mTLS-terminating proxy at the login host (URL-encoded
    # PEM, as nginx $ssl_client_escaped_cert) is passed to the device gate only when the TCP peer
    # is one of these proxies; from anyone else the header is ignored (and logged).
    device_cert_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
    device_cert_header: str = "X-Client-Cert"
    # Failed passwords, counted by every process together (docs/decisions.md): an account
    # with max_failed_logins failures in the window (from anywhere) is slowed, never locked:
    # each source may try it once per slowed_login_interval (growing to 10x as failures grow);
    # a source with max_failed_logins_per_source failures (any usernames) is refused.
    max_failed_logins: int = Field(default=5, ge=1)
    max_failed_logins_per_source: int = Field(default=20, ge=1)
    failed_login_window: timedelta = timedelta(minutes=15)
    slowed_login_interval: timedelta = timedelta(seconds=30)
