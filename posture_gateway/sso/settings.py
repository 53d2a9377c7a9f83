"""Settings of the SSO session: the ``sessions`` section of the gateway ``Settings``.

Read once at start-up. ``idle_ttl`` is how long a session lives without being used (each use
slides it, never beyond ``absolute_ttl`` from the login); ``absolute_ttl`` is the most a
session lives after the password was given, whatever its use.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import ConfigDict, field_validator, model_validator

from mdm_core.support.durations import DurationsModel

__all__ = ["SessionSettings"]


class SessionSettings(DurationsModel):
    """The ``sessions`` section: lifetimes and the cookie name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Off: every authorize asks for credentials (no session is created or honoured).
    enabled: bool = True
    idle_ttl: timedelta = timedelta(hours=2)
    absolute_ttl: timedelta = timedelta(hours=12)
    cookie_name: str = "posture_sso"

    @field_validator("idle_ttl", "absolute_ttl")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive")
        return value

    @field_validator("cookie_name")
    @classmethod
    def _token(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in "_-" for c in value) or len(value) > 64:
            raise ValueError("1-64 letters, digits, '_' or '-'")
        return value

    @model_validator(mode="after")
    def _idle_within_absolute(self) -> SessionSettings:
        if self.idle_ttl > self.absolute_ttl:
            raise ValueError("sessions.idle_ttl must not exceed sessions.absolute_ttl")
        return self
