"""The ``metrics:`` block of the configuration (see docs/configuration.md and docs/operations.md).

``enabled``: serve the Prometheus metrics at all. ``token``: the bearer token ``GET /metrics``
on the main listener requires (>= 32 characters, compared in constant time); without one the
main listener refuses. ``listen``: ``host:port`` of a separate plain-HTTP listener that serves
only the metrics (no token: bind it to an address only the scraper reaches); when set, the
main listener does not serve ``/metrics`` at all.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

__all__ = ["MetricsSettings", "MIN_METRICS_TOKEN_LENGTH", "parse_listen"]

MIN_METRICS_TOKEN_LENGTH = 32
_LISTEN = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?P<port>[0-9]{1,5})$")


def parse_listen(value: str, *, allow_any_port: bool = False) -> tuple[str, int]:
    """``"127.0.0.1:9464"`` -> ``("127.0.0.1", 9464)``; ``ValueError`` when malformed.
    ``allow_any_port``: port 0 (the system picks one) is accepted too (tests)."""
    match = _LISTEN.match(value)
    lowest = 0 if allow_any_port else 1
    if match is None or not lowest <= int(match["port"]) < 65536:
        raise ValueError("must be host:port, for example 127.0.0.1:9464")
    return match["host"].strip("[]"), int(match["port"])


class MetricsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    token: SecretStr | None = None
    listen: str | None = None

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_METRICS_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_METRICS_TOKEN_LENGTH} characters")
        return value

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value
