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
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from posture_gateway.integration_settings import IntegrationSettings
from posture_gateway.observability.logs import LogFormat
from posture_gateway.observability.settings import MetricsSettings
from posture_gateway.oidc.settings import OIDCSettings
from posture_gateway.pages.settings import HelpdeskSettings

__all__ = ["Settings", "CASettings", "ProofSettings", "ConfigError", "load_settings"]


class ConfigError(Exception):
    """The configuration is invalid; the message names the key and the reason."""


class _Strict(BaseModel):
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


class Settings(_Strict):
    """Everything the server needs to start. Tests pass ``Settings(...)`` directly."""

    data_dir: Path = Path("var")
    database_url: str | None = None  # default: sqlite in data_dir
    redis_url: str | None = None  # None: in-process bus, cache and replay store
    public_url: str = "http://127.0.0.1:8000"  # issuer / audience base, no trailing slash
    policy_dir: Path = Path("policies")
    dev_mode: bool = False  # allows an unencrypted CA key in data_dir (demo, tests)
    ca: CASettings = Field(default_factory=CASettings)
    proof: ProofSettings = Field(default_factory=ProofSettings)
    oidc: OIDCSettings = Field(default_factory=OIDCSettings)
    integrations: IntegrationSettings = Field(default_factory=IntegrationSettings)
    max_request_bytes: int = 256 * 1024
    posture_history_length: int = 20
    secret_key: SecretStr | None = None  # Flask session signing; generated when absent
    # Bearer token of the admin JSON API (/admin/api/...); None disables it. >= 32 characters.
    admin_token: SecretStr | None = None
    # Prometheus /metrics: token-protected or on a separate listener (docs/operations.md).
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    # Who people contact when a failed check is not theirs to fix (remediation page).
    helpdesk: HelpdeskSettings = Field(default_factory=HelpdeskSettings)
    # text | json; None leaves logging as the host process set it (tests, embedding).
    log_format: LogFormat | None = None

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve()}/posture.sqlite3"


def _env_layer(environ: Mapping[str, str], prefix: str = "POSTURE_") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(prefix) or key == "POSTURE_CONFIG":
            continue
        path = key[len(prefix) :].lower().split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
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
    layers = _merge(layers, _env_layer(environ))
    try:
        return Settings.model_validate(layers)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from exc
