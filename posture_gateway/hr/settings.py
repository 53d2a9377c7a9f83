"""The ``hr`` settings section: which HR webhooks are on, their secrets, and how a BambooHR
employee maps to a directory user.

A source without a secret is off (its route answers 404). Each secret is given either inline
(``secret``, a ``SecretStr``: from ``POSTURE_HR__BAMBOOHR__SECRET`` or the config file) or as a
file (``secret_file``, read once at start-up); exactly one of the two. Secrets are never
logged or printed, and every problem is raised at start with the key it is about.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from mdm_core.support.durations import DurationsModel

__all__ = [
    "HrSettings",
    "BambooHrSettings",
    "GenericHrSettings",
    "MIN_SECRET_LENGTH",
    "MatchAttribute",
]

#: Shortest webhook secret accepted (BambooHR's generated private keys are longer).
MIN_SECRET_LENGTH = 16

#: Which directory attribute the configured HR field is compared with.
MatchAttribute = Literal["email", "username", "user_id"]


class _Strict(DurationsModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Signed(_Strict):
    secret: SecretStr | None = None
    secret_file: Path | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> _Signed:
        if (self.secret is None) == (self.secret_file is None):
            raise ValueError("give exactly one of secret and secret_file")
        self.secret_bytes()  # a file that cannot be read stops the start, naming the key
        return self

    def secret_bytes(self) -> bytes:
        """The HMAC key (the secret's UTF-8 bytes)."""
        if self.secret is not None:
            value = self.secret.get_secret_value()
        else:
            assert self.secret_file is not None
            try:
                value = self.secret_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"secret_file {self.secret_file} cannot be read") from exc
        if len(value) < MIN_SECRET_LENGTH:
            raise ValueError(f"the secret has fewer than {MIN_SECRET_LENGTH} characters")
        return value.encode("utf-8")


class BambooHrSettings(_Signed):
    """``hr.bamboohr``: the webhook's private key and the employee fields we read.

    Field names are those the webhook posts (BambooHR's English names unless the webhook
    gives them aliases): set the webhook to post these fields, or change the names here.
    """

    # The posted field that identifies the user, and what it is compared with.
    match_field: str = Field(default="workEmail", min_length=1, max_length=128)
    match_attribute: MatchAttribute = "email"
    status_field: str = Field(default="status", min_length=1, max_length=128)
    # Values of status_field that mean "no longer employed" (compared ignoring case).
    inactive_values: tuple[str, ...] = ("inactive",)
    termination_date_field: str = Field(default="terminationDate", min_length=1, max_length=128)
    # The time zone a termination date (a day) is read in: the offboarding starts at its
    # midnight.
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("inactive_values")
    @classmethod
    def _lower(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("give at least one inactive value")
        return tuple(v.strip().lower() for v in value)


class GenericHrSettings(_Signed):
    """``hr.generic``: the secret of our own JSON shape (``X-Posture-Signature``)."""


class HrSettings(_Strict):
    bamboohr: BambooHrSettings | None = None
    generic: GenericHrSettings | None = None
    # How old a delivery's timestamp may be (BambooHR: 5 minutes), and how far ahead of our
    # clock (skew).
    max_age: timedelta = Field(default=timedelta(minutes=5), gt=timedelta(0))
    future_leeway: timedelta = Field(default=timedelta(seconds=60), ge=timedelta(0))
    # Largest webhook body (bytes); the server's max_request_bytes bounds it too.
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    # How long each delivery's records are kept (what the admin API lists, and what answers a
    # redelivery); older ones are purged. Longer than the replay window, so a delivery can
    # never be applied twice by a replay of the captured request.
    delivery_retention: timedelta = Field(default=timedelta(days=90))

    @model_validator(mode="after")
    def _retention_outlives_replay_window(self) -> HrSettings:
        window = self.max_age + self.future_leeway
        if self.delivery_retention <= window:
            raise ValueError(
                f"delivery_retention must be longer than max_age + future_leeway ({window})"
            )
        return self

    @model_validator(mode="after")
    def _different_secrets(self) -> HrSettings:
        if self.bamboohr is not None and self.generic is not None:
            if self.bamboohr.secret_bytes() == self.generic.secret_bytes():
                raise ValueError("hr.bamboohr and hr.generic must have different secrets")
        return self

    @property
    def enabled(self) -> bool:
        return self.bamboohr is not None or self.generic is not None
