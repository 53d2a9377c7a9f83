"""The one error type of the HR webhooks: :class:`HrError` (an HTTP status, a machine code
and a reason), raised by the signature check and the parsers and turned into the JSON error
answer ``{"error": code, "reason": text}`` by the views."""

from __future__ import annotations

__all__ = ["HrError"]


class HrError(Exception):
    """A refused delivery; nothing was written."""

    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason


class NotAllApplied(HrError):
    """Some employee events of a delivery could not be applied; the others were (each in its
    own transaction). 503, so that the sender retries: the retry applies only what is missing."""

    def __init__(self, failed: int, total: int) -> None:
        super().__init__(
            503,
            "not_all_applied",
            f"{failed} of {total} employee events could not be applied (the others were); "
            "send the delivery again",
        )
