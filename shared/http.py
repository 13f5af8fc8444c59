"""Outbound HTTP plumbing: the two kinds of failure, retries with backoff, URL redaction.

Knows nothing about carriers or Omnitron. The split is the one the contract draws for
every peer: 429, 5xx, timeouts and refused connections may heal by themselves and are
retried; any other 4xx will fail the same way again and must reach a human instead.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Callable, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import structlog
import tenacity

from shared.errors import PermanentError, TransientError

log = structlog.get_logger(__name__)
T = TypeVar("T")

_BODY_EXCERPT = 500
# The first retry waits up to this long; each further one doubles the window.
_FIRST_WINDOW_S = 0.5


# Subclassing the project's failure kinds lets the ack/retry/dead-letter policy
# (shared/failure.py) act on an HTTP failure without a translation layer.
class TransientHTTPError(TransientError):
    """Worth trying again later. ``status`` is None when no answer came back at all.

    ``ambiguous``: the request may have reached the peer and may still take effect there
    (no answer after it was sent, or a gateway timeout), so a retry may land twice and
    the lost attempt may land after a later request.
    """

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None,
                 ambiguous: bool = False):
        super().__init__(message, retry_after_s=retry_after)
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.ambiguous = ambiguous

    def __str__(self) -> str:
        prefix = f"HTTP {self.status}" if self.status is not None else "no answer"
        return f"{prefix}: {self.message}"


class PermanentHTTPError(PermanentError):
    """The peer refused the request for a reason retrying will not change."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.message}"


def redact_url(url: str | httpx.URL) -> str:
    """The URL without ``user:password@``, fit for logs and error messages."""
    parts = urlsplit(str(url))
    if "@" not in parts.netloc:
        return str(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value or not value.strip():
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        return None  # unreadable: fall back to our own backoff
    when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:  # not JSON, or not decodable
        body = None
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        parts = [f"{e.get('code', '?')}: {e.get('message', '')}" for e in body["errors"] if isinstance(e, dict)]
        if parts:
            return "; ".join(parts)
    text = response.text.strip()
    return text[:_BODY_EXCERPT] if text else (response.reason_phrase or "no body")


def raise_for_response(response: httpx.Response) -> None:
    """Nothing for 2xx; :class:`TransientHTTPError` for 429/5xx; :class:`PermanentHTTPError` else."""
    status = response.status_code
    if 200 <= status < 300:
        return
    message = _reason(response)
    if status == 429 or status >= 500:
        raise TransientHTTPError(message, status, parse_retry_after(response.headers.get("retry-after")),
                                 ambiguous=status == 504)
    raise PermanentHTTPError(message, status)


# Failures that prove the request never left: anything else after sending may have arrived.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def call_with_retries(
    fn: Callable[[], T], *, attempts: int, max_wait_s: float, sleep: Callable[[float], None] = time.sleep,
    on_failure: Callable[[TransientHTTPError], None] | None = None,
) -> T:
    """``fn()``, retried on transient failures; the last one is re-raised after ``attempts``.

    Waits grow exponentially with full jitter, so replicas that failed together do not
    come back together; a peer's ``Retry-After`` is a floor, ``max_wait_s`` the ceiling.
    ``on_failure`` sees every failed attempt, also those a later attempt made good.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    backoff = tenacity.wait_random_exponential(multiplier=_FIRST_WINDOW_S, max=max_wait_s)

    def wait(state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        floor = getattr(error, "retry_after", None) or 0.0
        return min(max(backoff(state), floor), max_wait_s)

    def announce(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("http.retrying", attempt=state.attempt_number, of=attempts,
                    wait_s=round(state.upcoming_sleep, 3), error=str(error))

    def once() -> T:
        try:
            try:
                return fn()
            except httpx.TimeoutException as exc:
                raise TransientHTTPError(f"timed out ({type(exc).__name__})",
                                         ambiguous=not isinstance(exc, _NEVER_SENT)) from exc
            except httpx.TransportError as exc:
                raise TransientHTTPError(f"connection failed ({type(exc).__name__}: {exc})",
                                         ambiguous=not isinstance(exc, _NEVER_SENT)) from exc
        except TransientHTTPError as exc:
            if on_failure is not None:
                on_failure(exc)
            raise

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=wait,
        retry=tenacity.retry_if_exception_type(TransientHTTPError),
        before_sleep=announce,
        sleep=sleep,
        reraise=True,
    )
    return retrying(once)
