"""Errors of the policy package.

::

    PolicyError
     +-- PolicyValidationError   a policy directory or file does not validate; carries every
                                 Problem (file, line, reason)
     +-- PolicySetUnavailable    no valid policy set has ever been loaded (fail closed)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Problem", "PolicyError", "PolicyValidationError", "PolicySetUnavailable"]


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """One mistake in a policy file, located by file and 1-based line."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


class PolicyError(Exception):
    """Base of the policy package's errors."""


class PolicyValidationError(PolicyError):
    """Policy files did not validate. ``problems`` lists every mistake found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid policy set")


class PolicySetUnavailable(PolicyError):
    """No valid policy set is loaded: every decision must block."""
