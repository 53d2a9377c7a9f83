"""The ``helpdesk:`` block of the configuration: who people call when a check is not theirs
to fix. Shown on the remediation, landing and privacy pages. Every field is optional; with
none set the pages say "your IT help desk".
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["HelpdeskSettings"]


class HelpdeskSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="your IT help desk", min_length=1, max_length=120)
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s<>\"']+@[^@\s<>\"']+$")
    phone: str | None = Field(default=None, max_length=40, pattern=r"^[0-9+() .-]{3,40}$")
    url: str | None = Field(default=None, max_length=2048)
    organisation: str = Field(default="Your organisation", min_length=1, max_length=120)

    @field_validator("url")
    @classmethod
    def _https_link(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value
