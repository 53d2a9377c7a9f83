"""Configuration: defaults, then one config file, then ``POSTURE_*`` environment variables.

Read once at start-up and validated with pydantic; an invalid value stops the process with a
message that names the key. Nesting in the environment uses ``__``:
``POSTURE_CA__PASSPHRASE=...`` sets ``ca.passphrase``. The config file (YAML) is given by
``POSTURE_CONFIG`` or ``--config``. Secrets are ``SecretStr`` and never logged or printed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import ConfigDict, Field, SecretStr, ValidationError

from idp_connectors.ldap.config import LdapSettings
from idp_connectors.scim.config import ScimSettings
from mdm_core.policy.staleness import DEFAULT_BATCH as STALE_SWEEP_BATCH
from mdm_core.policy.staleness import DEFAULT_INTERVAL as STALE_SWEEP_INTERVAL
from mdm_core.read_model.warm import DEFAULT_WARM_DEVICES
from mdm_core.support.durations import DurationsModel
from posture_gateway.directory.settings import DirectorySettings
from posture_gateway.hr.settings import HrSettings
from posture_gateway.integrations.settings import IntegrationSettings
from posture_gateway.observability.logs import LogFormat
from posture_gateway.observability.settings import MetricsSettings
from posture_gateway.oidc.settings import OIDCSettings
from posture_gateway.pages.settings import HelpdeskSettings
from posture_gateway.saml.settings import SAMLSettings
from posture_gateway.signals.settings import SignalsSettings
from posture_gateway.sso.settings import SessionSettings

__all__ = [
    "Settings",
    "CASettings",
    "LongPollSettings",
    "ProofSettings",
    "StaleSweepSettings",
    "ConfigError",
    "load_settings",
    "merge_layers",
    "SHIPPED_POLICY_DIR",
]


#: The policy set shipped inside the package (the repository's top-level ``policies/``,
#: linked as ``posture_gateway/default_policies`` and packaged as data): ``policy_dir``'s default.
SHIPPED_POLICY_DIR = Path(__file__).absolute().parent / "default_policies"


class ConfigError(Exception):
    """The configuration is invalid; the message names the key and the reason."""


class _Strict(DurationsModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CASettings(_Strict):
    # Passphrase that encrypts the generated CA key at rest. Required outside dev mode.
    passphrase: SecretStr | None = None
    # Alternatively load an existing CA: PEM key (may be encrypted with passphrase) + cert.
    key_path: Path | None = None
    cert_path: Path | None = None
    device_cert_lifetime: timedelta = timedelta(days=30)
    renew_before: timedelta = timedelta(days=7)


class ProofSettings(_Strict):
    # How old a device proof's iat may be, and how far in the future (clock skew).
    max_age: timedelta = timedelta(seconds=120)
    leeway: timedelta = timedelta(seconds=5)


class EnrollSettings(_Strict):
    # POST /mdm/v1/enroll attempts per client address, and per target (a serial or a token),
    # counted by every process together (Redis when configured, else the database).
    limit_per_source: int = Field(default=20, ge=1)
    source_window: timedelta = timedelta(minutes=1)
    limit_per_target: int = Field(default=10, ge=1)
    target_window: timedelta = timedelta(minutes=10)


class LongPollSettings(_Strict):
    # Device long-polls (GET /mdm/v1/commands/wait) each hold a request thread while they wait:
    # at most max_waits per process (keep it well below `posture serve --threads`, which
    # refuses to start otherwise), each held at most max_wait_s seconds. 0 disables long-polls.
    max_waits: int = Field(default=2, ge=0, le=256)
    max_wait_s: int = Field(default=25, ge=1, le=60)


class ReadModelSettings(_Strict):
    # Devices (most recently checked in first) whose decision state, and their owners', each
    # served worker reads into its read model at start (0: none; the cache fills on misses).
    warm_devices: int = Field(default=DEFAULT_WARM_DEVICES, ge=0, le=1_000_000)


class StaleSweepSettings(_Strict):
    # The stale-posture sweep (mdm_core.policy.staleness, docs/sessions.md): every interval,
    # in every `posture serve` worker (a lease makes one do the work), devices whose last
    # check-in is older than their policy's max_posture_age are blocked and their sessions and
    # tokens revoked, at most `batch` devices per sweep. On by default; turn it off only on
    # purpose (a unit-test build, or a replica that must never write).
    enabled: bool = True
    interval: timedelta = Field(default=STALE_SWEEP_INTERVAL, gt=timedelta(0))
    batch: int = Field(default=STALE_SWEEP_BATCH, ge=1, le=10_000)


class OffboardingSettings(_Strict):
    # The durable offboarding job (mdm_core.offboarding, docs/offboarding.md): every interval,
    # in every `posture serve` worker (a lease makes one do the work), scheduled jobs that are
    # due fire and running ones advance (retire after the acknowledgement, done).
    interval: timedelta = Field(default=timedelta(seconds=5), gt=timedelta(0))


class Settings(_Strict):
    """Everything the server needs to start. Tests pass ``Settings(...)`` directly."""

    data_dir: Path = Path("var")
    database_url: str | None = None  # default: sqlite in data_dir
    redis_url: str | None = None  # None: in-process bus, cache and replay store
    public_url: str = "http://127.0.0.1:8000"  # issuer / audience base, no trailing slash
    policy_dir: Path = SHIPPED_POLICY_DIR
    dev_mode: bool = False  # allows an unencrypted CA key in data_dir (demo, tests)
    ca: CASettings = Field(default_factory=CASettings)
    proof: ProofSettings = Field(default_factory=ProofSettings)
    enroll: EnrollSettings = Field(default_factory=EnrollSettings)
    # Reverse proxies in front of the server that append the client address to
    # X-Forwarded-For (0: none, the TCP peer is the client). Rate limits count per client
    # address: behind a proxy, set this or every client is the proxy.
    trusted_proxy_hops: int = Field(default=0, ge=0, le=5)
    oidc: OIDCSettings = Field(default_factory=OIDCSettings)
    # The gateway's SSO session: lifetimes and cookie (docs/sessions.md).
    sessions: SessionSettings = Field(default_factory=SessionSettings)
    # The SAML 2.0 IdP (docs/saml.md); None: no /saml endpoints.
    saml: SAMLSettings | None = None
    # Which directory source wins, per user attribute (posture_gateway/directory/settings.py).
    directory: DirectorySettings = Field(default_factory=DirectorySettings)
    integrations: IntegrationSettings = Field(default_factory=IntegrationSettings)
    # SCIM 2.0 server at /scim/v2: provisioning clients and their tokens (docs/scim.md).
    scim: ScimSettings = Field(default_factory=ScimSettings)
    # Shared Signals transmitter: receivers and delivery (docs/shared-signals.md).
    signals: SignalsSettings = Field(default_factory=SignalsSettings)
    # HR webhooks (BambooHR, generic) that start offboarding (docs/hr-triggers.md).
    hr: HrSettings = Field(default_factory=HrSettings)
    long_poll: LongPollSettings = Field(default_factory=LongPollSettings)
    read_model: ReadModelSettings = Field(default_factory=ReadModelSettings)
    stale_sweep: StaleSweepSettings = Field(default_factory=StaleSweepSettings)
    offboarding: OffboardingSettings = Field(default_factory=OffboardingSettings)
    max_request_bytes: int = 256 * 1024
    posture_history_length: int = 20
    secret_key: SecretStr | None = None  # Flask session signing; generated when absent
    # Bearer token of the admin JSON API (/admin/api/...); None disables it. >= 32 characters.
    admin_token: SecretStr | None = None
    # Failed admin API authentications allowed per source address and minute (then 429).
    admin_auth_failures_per_minute: int = Field(default=30, ge=1)
    # Prometheus /metrics: token-protected or on a separate listener (docs/operations.md).
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    # Who people contact when a failed check is not theirs to fix (remediation page).
    helpdesk: HelpdeskSettings = Field(default_factory=HelpdeskSettings)
    # text | json; None leaves logging as the host process set it (tests, embedding).
    log_format: LogFormat | None = None
    # An LDAP / Active Directory source of the directory mirror (docs/directory-sync.md);
    # the bind password from POSTURE_LDAP__BIND_PASSWORD or ldap.bind_password_file.
    ldap: LdapSettings | None = None

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve()}/posture.sqlite3"


#: ``POSTURE_*`` variables that are not server settings: the config file path, the CLI's debug
#: switch, and the reference agent's own variables (an agent host may run ``posture`` server
#: commands too), ``posture try-login``'s client secret; tests use ``POSTURE_TEST_*``.
_NOT_SETTINGS = frozenset(
    {
        "POSTURE_CONFIG",
        "POSTURE_DEBUG",
        "POSTURE_AGENT_STATE_DIR",
        "POSTURE_AGENT_HOST_ROOT",
        "POSTURE_ENROLLMENT_SECRET",
        "POSTURE_TRY_LOGIN_CLIENT_SECRET",  # posture try-login's --client-secret
        "POSTURE_SERVE_WORKER",  # set by `posture serve` in its workers (background jobs)
    }
)


def _env_layer(environ: Mapping[str, str], prefix: str = "POSTURE_") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(prefix) or key in _NOT_SETTINGS or key.startswith("POSTURE_TEST_"):
            continue
        path = key[len(prefix) :].lower().split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def merge_layers(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` laid on ``base``: nested mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = merge_layers(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(
    config_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build ``Settings`` from the file layer and the environment layer, validated once."""
    environ = os.environ if environ is None else environ
    layers: dict[str, Any] = {}
    path = config_file or (Path(environ["POSTURE_CONFIG"]) if "POSTURE_CONFIG" in environ else None)
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the config file must be a mapping of keys")
        layers = loaded
    layers = merge_layers(layers, _env_layer(environ))
    try:
        return Settings.model_validate(layers)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from exc
