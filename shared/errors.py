"""How a handler tells the failure policy what kind of failure it hit."""
from __future__ import annotations


class PermanentError(Exception):
    """Retrying cannot help (invalid input, a 4xx answer): dead-letter with the reason."""


class TransientError(Exception):
    """Retrying later may help (5xx, 429, timeouts, database down)."""

    #: False: retried without limit (nothing is lost while a dependency is down).
    exhausts: bool = True

    def __init__(self, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DependencyDown(TransientError):
    """A dependency we must never give up on (Omnitron): retried without limit."""

    exhausts = False
