"""Outbound HTTP plumbing: the two kinds of failure, retries with backoff, URL redaction.

Knows nothing about carriers or Omnitron. The split is the one the contract draws for
every peer: 429, 5xx, timeouts and refused connections may heal by themselves and are
retried; any other 4xx will fail the same way again and must reach a human instead.
"""

from __future__ import annotations

import contextvars
import math
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Callable, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpcore
import httpx
import structlog
import tenacity

from shared import tracing
from shared.failure import PermanentError, TransientError

if TYPE_CHECKING:
    import ssl

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


#: The largest answer body read from a peer (CONTRACT.md §4); a longer one is an error.
MAX_BODY_BYTES = 1 << 20
#: An answer's head (status line and headers) is at most this many header lines and bytes.
MAX_HEADERS = 100
MAX_HEAD_BYTES = 64 * 1024
#: The grammar an answer's head is held to (RFC 9112 §4 and §5, without obsolete line folding).
STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: [\t\x20-\x7e\x80-\xff]*)?\r\n")
HEADER_LINE = re.compile(
    rb"([-!#$%&'*+.^_`|~0-9A-Za-z]+):[ \t]*((?:[\x21-\x7e\x80-\xff]+[ \t]+)*[\x21-\x7e\x80-\xff]*)"
    rb"[ \t]*\r\n"
)


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


def _reason(response: httpx.Response) -> str:
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


def raise_for_response(response: httpx.Response, max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S) -> None:
    """Nothing for 2xx; :class:`TransientHTTPError` for 429/5xx; :class:`PermanentHTTPError` else."""
    status = response.status_code
    if 200 <= status < 300:
        return
    message = _reason(response)
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(response.headers.get("retry-after"), max_retry_after_s, _peer(response))
        raise TransientHTTPError(message, status, retry_after, ambiguous=status == 504)
    raise PermanentHTTPError(message, status)


def _peer(response: httpx.Response) -> str | None:
    try:
        return redact_url(response.request.url.copy_with(query=None))
    except RuntimeError:  # a response built without its request
        return None


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
# httpx's timeouts bound each socket operation, not the request: a peer that drips its
# answer a byte at a time, just inside the read timeout, holds the calling thread for as
# long as it likes. The network backend below clamps every connect, read and write to the
# deadline of the request under way (a context variable, so one client serves many
# threads), and checks the head of every answer itself (:func:`head_problem`): h11 skips
# interim ``1xx`` answers silently, which the contract makes an error, and bounds neither
# the number of header lines nor a head that arrives in one piece.


class InterimAnswerError(httpcore.RemoteProtocolError):
    """The peer sent an interim (``1xx``) answer, which our requests never ask for."""


class BadHeadError(httpcore.RemoteProtocolError):
    """An answer's head breaks the grammar or the bounds of :func:`head_problem`."""


def head_problem(head: bytes) -> str | None:
    """What is wrong with a complete answer head (ending in the empty line), or None."""
    if len(head) > MAX_HEAD_BYTES:
        return f"answer head over {MAX_HEAD_BYTES} bytes"
    lines = head.split(b"\r\n")[:-2]
    status = STATUS_LINE.fullmatch(lines[0] + b"\r\n")
    if status is None:
        return f"not an HTTP/1.1 status line: {lines[0][:80]!r}"
    if status[2].startswith(b"1"):
        return f"interim answer {int(status[2])}: our requests ask for none"
    if len(lines) - 1 > MAX_HEADERS:
        return f"more than {MAX_HEADERS} header lines"
    bad = next((line for line in lines[1:] if HEADER_LINE.fullmatch(line + b"\r\n") is None), None)
    if bad is not None:
        return f"malformed header line: {bad[:80]!r}"
    names = {line.split(b":", 1)[0].lower() for line in lines[1:]}
    if b"transfer-encoding" in names and b"content-length" in names:
        return "both Transfer-Encoding and Content-Length"  # RFC 9112 §6.3: a sign of request smuggling
    return None


_request_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("request_deadline", default=None)


def _within_deadline(timeout: float | None, passed: type[Exception] = httpcore.ReadTimeout) -> float | None:
    deadline = _request_deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise passed("the request's total deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream):
        self._inner = inner
        self._head: bytearray | None = None  # the answer's head while it comes in

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self._inner.read(max_bytes, _within_deadline(timeout))
        if self._head is not None:
            self._check_head(data)
        return data

    def _check_head(self, data: bytes) -> None:
        self._head += data  # type: ignore[operator]  # read() checks a head only while one comes in
        end = self._head.find(b"\r\n\r\n")
        if end < 0 and len(self._head) > MAX_HEAD_BYTES:
            raise BadHeadError(f"answer head over {MAX_HEAD_BYTES} bytes")
        if end < 0 and data:
            return
        head, self._head = bytes(self._head[: end + 4]), None
        if end < 0:  # closed before the head ended: h11 reports that
            return
        if (problem := head_problem(head)) is not None:
            raise (InterimAnswerError if "interim" in problem else BadHeadError)(problem)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._head = bytearray()  # the answer to this request comes next
        self._inner.write(buffer, _within_deadline(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, _within_deadline(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(
            self._inner.connect_tcp(
                host, port, _within_deadline(timeout, httpcore.ConnectTimeout), local_address, socket_options
            )
        )

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(
            self._inner.connect_unix_socket(path, _within_deadline(timeout, httpcore.ConnectTimeout), socket_options)
        )

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _DeadlineTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        # httpx builds its connection pool without a way to pass a network backend.
        defaults = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)
        self._pool = httpcore.ConnectionPool(
            ssl_context=self._pool._ssl_context,
            max_connections=defaults.max_connections,
            max_keepalive_connections=defaults.max_keepalive_connections,
            keepalive_expiry=defaults.keepalive_expiry,
            network_backend=_DeadlineBackend(),
        )


def bounded_client(timeout_s: float) -> httpx.Client:
    """An ``httpx.Client`` for :func:`request_bounded`: each request within ``timeout_s`` in all."""
    # identity: a compressed answer would be inflated before the size cap could see it.
    return httpx.Client(timeout=timeout_s, transport=_DeadlineTransport(), headers={"accept-encoding": "identity"})


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    token = _request_deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _request_deadline.reset(token)


def request_bounded(
    http: httpx.Client, method: str, url: str, *, total_s: float, max_body_bytes: int = MAX_BODY_BYTES, **kwargs: Any
) -> httpx.Response:
    """``http.request``, its answer complete within ``total_s`` and its body at most ``max_body_bytes``.

    A longer body, a compressed one (we ask for none), an interim answer or a deadline
    passed raise ``httpx`` transport errors, which :func:`call_with_retries` treats as
    transient, as for any answer that did not arrive whole.
    """
    with (
        _deadline(total_s),
        tracing.http_call(method, url, kwargs) as call,
        http.stream(method, url, **kwargs) as response,
    ):
        call.answered(response.status_code)
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise httpx.DecodingError(f"answer compressed ({encoding[:40]!r}) though none was asked for")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body_bytes:
            raise httpx.RemoteProtocolError(f"answer body of {int(declared)} bytes, over {max_body_bytes}")
        body = bytearray()
        for chunk in response.iter_raw():
            body += chunk
            if len(body) > max_body_bytes:
                raise httpx.RemoteProtocolError(f"answer body over {max_body_bytes} bytes")
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() != "content-encoding"]
    return httpx.Response(response.status_code, headers=headers, content=bytes(body), request=response.request)
