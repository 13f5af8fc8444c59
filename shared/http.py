"""Outbound HTTP plumbing: the two kinds of failure, retries with backoff, URL redaction.

Knows nothing about carriers or Omnitron. The split is the one the contract draws for
every peer: 429, 5xx, timeouts and refused connections may heal by themselves and are
retried; any other 4xx will fail the same way again and must reach a human instead.
"""

from __future__ import annotations

import json as _json
import math
import re
import threading
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import structlog
import tenacity

from shared import tracing
from shared.failure import PermanentError, TransientError
from shared.http11 import MAX_BODY_BYTES, SyncHttp11Pool, request_head

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

    def __init__(
        self, message: str, status: int | None = None, retry_after: float | None = None, ambiguous: bool = False
    ):
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


#: ``OMS_MAX_RETRY_AFTER_S``'s default: the longest a peer's ``Retry-After`` is waited.
DEFAULT_MAX_RETRY_AFTER_S = 3600.0


def parse_retry_after(
    value: str | None, bound_s: float = DEFAULT_MAX_RETRY_AFTER_S, peer: str | None = None
) -> float | None:
    """``Retry-After`` as seconds from now (delta-seconds or an HTTP-date, RFC 9110 §10.2.3), at most ``bound_s``.

    None when there is no header: our own backoff decides. A value larger than the bound,
    negative (a date in the past included), not finite or unreadable waits the bound and
    is logged (CONTRACT.md §4): a peer that asks for a pause it cannot state is paused
    for the longest we allow, never for ever and never not at all.
    """
    if value is None or not value.strip():
        return None
    seconds = _retry_after_seconds(value.strip())
    if seconds is not None and 0 <= seconds <= bound_s:
        return seconds
    log.warning(
        "http.retry_after_bounded",
        retry_after=value[:80],
        waited_s=bound_s,
        peer=peer,
        reason="unreadable" if seconds is None else "out of range",
    )
    return bound_s


# RFC 9110's delta-seconds, and decimals, which some peers send; not Python's float syntax
# ("1_000", "1e3", "nan" and "infinity" are no delays).
_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def _retry_after_seconds(value: str) -> float | None:
    """The header's seconds from now, negative for the past; None when unreadable or not finite."""
    seconds = float(value) if _DELTA_SECONDS.fullmatch(value) else None
    if seconds is None:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return seconds if math.isfinite(seconds) else None


def _reason(response: HttpAnswer) -> str:
    try:
        body = response.json()
    except (ValueError, RecursionError):  # not JSON, not decodable, or nested deeper than the parser goes
        body = None
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        parts = [f"{e.get('code', '?')}: {e.get('message', '')}" for e in body["errors"][:20] if isinstance(e, dict)]
        if parts:
            return "; ".join(parts)[:_BODY_EXCERPT]
    text = response.text.strip()
    return text[:_BODY_EXCERPT] if text else (response.reason_phrase or "no body")


def raise_for_response(response: HttpAnswer, max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S) -> None:
    """Nothing for 2xx; :class:`TransientHTTPError` for 429/5xx; :class:`PermanentHTTPError` else."""
    status = response.status_code
    if 200 <= status < 300:
        return
    message = _reason(response)
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(response.headers.get("retry-after"), max_retry_after_s, _peer(response))
        raise TransientHTTPError(message, status, retry_after, ambiguous=status == 504)
    raise PermanentHTTPError(message, status)


def _peer(response: HttpAnswer) -> str:
    return redact_url(response.url.split("?", 1)[0])


# Failures that prove the request never left: anything else after sending may have arrived.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def call_with_retries(
    fn: Callable[[], T],
    *,
    attempts: int,
    max_wait_s: float,
    sleep: Callable[[float], None] = time.sleep,
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
        log.warning(
            "http.retrying",
            attempt=state.attempt_number,
            of=attempts,
            wait_s=round(state.upcoming_sleep, 3),
            error=str(error),
        )

    def once() -> T:
        try:
            try:
                return fn()
            except httpx.TimeoutException as exc:
                raise TransientHTTPError(
                    f"timed out ({type(exc).__name__})", ambiguous=not isinstance(exc, _NEVER_SENT)
                ) from exc
            except httpx.TransportError as exc:
                raise TransientHTTPError(
                    f"connection failed ({type(exc).__name__}: {exc})", ambiguous=not isinstance(exc, _NEVER_SENT)
                ) from exc
        except TransientHTTPError as exc:
            if on_failure is not None:
                on_failure(exc)
            raise

    # The first attempt runs bare: most calls succeed at once, and tenacity's machinery costs
    # a good part of a fast call. Once it failed, tenacity takes over as if it had made it.
    try:
        return once()
    except TransientHTTPError as exc:
        if attempts == 1:
            raise
        failed = [exc]

    def again() -> T:
        if failed:
            raise failed.pop()
        return once()

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=wait,
        retry=tenacity.retry_if_exception_type(TransientHTTPError),
        before_sleep=announce,
        sleep=sleep,
        reraise=True,
    )
    return retrying(again)


# ---- answers bounded in time and size (sync clients: the shipper's carrier calls, Omnitron) ----
#
# Each request's answer is read whole within its total deadline and held to the bounds of
# shared/http11.py; httpx's timeouts bound each socket operation, not the request, and
# its sync stack cost 0.8 ms of CPU more per call than this one.


class HttpAnswer:
    """A peer's whole answer: what the clients and :func:`raise_for_response` read of it."""

    __slots__ = ("status_code", "headers", "content", "url")

    def __init__(self, status_code: int, headers: dict[str, str], content: bytes, url: str):
        self.status_code = status_code
        self.headers = headers  # lower-cased names
        self.content = content
        self.url = url

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    @property
    def reason_phrase(self) -> str:
        return httpx.codes.get_reason_phrase(self.status_code)

    def json(self) -> Any:
        return _json.loads(self.content)


class BoundedClient:
    """Kept-alive connections per origin (:class:`~shared.http11.SyncHttp11Pool`), shared by
    the threads of one client; :func:`request_bounded` sends through it, each request within
    its own total deadline."""

    def __init__(self) -> None:
        self._pools: dict[str, SyncHttp11Pool] = {}
        self._lock = threading.Lock()

    def pool(self, origin: str) -> SyncHttp11Pool:
        pool = self._pools.get(origin)
        if pool is None:
            with self._lock:
                pool = self._pools.setdefault(origin, SyncHttp11Pool(origin))
        return pool

    def close(self) -> None:
        for pool in list(self._pools.values()):
            pool.close()

    def __enter__(self) -> "BoundedClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_USER_AGENT = "oms-shipments"


def request_bounded(
    http: BoundedClient,
    method: str,
    url: str,
    *,
    total_s: float,
    max_body_bytes: int = MAX_BODY_BYTES,
    json: Any = None,
    headers: dict[str, str] | None = None,
) -> HttpAnswer:
    """One request, its answer complete within ``total_s`` and its body at most ``max_body_bytes``.

    A longer body, a compressed one (we ask for none), an interim answer or a deadline
    passed raise ``httpx`` transport errors, which :func:`call_with_retries` treats as
    transient, as for any answer that did not arrive whole.
    """
    parts = urlsplit(url)
    pool = http.pool(f"{parts.scheme}://{parts.netloc}")
    body = b"" if json is None else _json_bytes(json)
    request = {"headers": headers}
    with tracing.http_call(method, url, request) as call:
        fields = {"user-agent": _USER_AGENT, "accept-encoding": "identity", **(request["headers"] or {})}
        if json is not None:
            fields["content-type"] = "application/json"
        if body or method not in ("GET", "HEAD", "DELETE"):
            fields["content-length"] = str(len(body))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        status, answer_headers, content = pool.request(
            request_head(method, target, pool.host_header, fields), body, total_s, max_body_bytes
        )
        call.answered(status)
    encoding = answer_headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise httpx.DecodingError(f"answer compressed ({encoding[:40]!r}) though none was asked for")
    return HttpAnswer(status, answer_headers, content, url)


def _json_bytes(value: Any) -> bytes:
    return _json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
