"""Settings of the directory mirror: the ``directory`` section of the gateway ``Settings``.

``source_of_truth`` says, per user attribute, which directory sources win and in what order
(:mod:`mdm_core.directory.precedence`)::

    directory:
      source_of_truth:
        groups: [ldap, scim, import, users_file]
        email: [scim, ldap]
        active: [ldap, scim]

Validated at start-up: an unknown attribute, an empty or repeated source list stops the
process with a message naming the key. Empty (the default) keeps one owner per record.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field, field_validator

from mdm_core.directory.precedence import SourceOfTruth
from mdm_core.support.durations import DurationsModel

__all__ = ["DirectorySettings"]


class DirectorySettings(DurationsModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source_of_truth: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("source_of_truth")
    @classmethod
    def _valid(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        SourceOfTruth.parse(value)  # SourceOfTruthError is a ValueError: names the key
        return value

    def precedence(self) -> SourceOfTruth:
        return SourceOfTruth.parse(self.source_of_truth)
