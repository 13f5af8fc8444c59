"""The failure policy: the kinds of failure, and the one place that decides what happens to a
message after its handler ran.

ack: applied (or a duplicate).  retry: published to a delay queue with the attempt
counted in our own header, then acked.  dead-letter: published to the service's
``.dlq`` with the reason, then acked.  Nothing is acked without one of these.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

from psycopg import DataError as DriverDataError
from psycopg import OperationalError as DriverOperationalError
from sqlalchemy.exc import DataError, DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout


# How a handler (or a client it calls: shared/http.py) tells the policy what kind of failure it hit.
# ``error_class`` is the name dead letters (``x-oms-error-class``) and metrics give the kind;
# a client's own subclass (shared/http.py) keeps its kind's name, so operators filter on one.
class PermanentError(Exception):
    """Retrying cannot help (invalid input, a 4xx answer): dead-letter with the reason."""

    error_class = "PermanentError"


class TransientError(Exception):
    """Retrying later may help (5xx, 429, timeouts, database down)."""

    error_class = "TransientError"

    #: False: retried without limit (nothing is lost while a dependency is down).
    exhausts: bool = True

    def __init__(self, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DependencyDown(TransientError):
    """A dependency we must never give up on (Omnitron): retried without limit."""

    error_class = "DependencyDown"

    exhausts = False


class Verdict(str, Enum):
    ACK = "ack"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    delay_s: float = 0.0
    reason: str = ""
    error_class: str = ""
    #: The shortest wait the failure asked for (a peer's Retry-After): jitter never goes below it.
    min_delay_s: float = 0.0
    #: The whole wait asked for, when it is longer than the tier (``delay_s``): the message
    #: then waits out the rest in further rounds of the tier (shared/disposal.py).
    wait_s: float = 0.0


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    delays_s: tuple[float, ...]
    jitter: float = 0.2

    def tier(self, attempt: int, at_least_s: float = 0.0) -> float:
        """The delay tier (a retry queue) for the given attempt number, starting at 1."""
        index = min(max(attempt, 1) - 1, len(self.delays_s) - 1)
        for delay in self.delays_s[index:]:
            if delay >= at_least_s:
                return delay
        return self.delays_s[-1]

    def jittered(self, tier: float, at_least_s: float = 0.0) -> float:
        # Per-message expiration below the queue's TTL spreads a burst of retries
        # over the tier instead of releasing them all at once.
        return max(at_least_s, tier * (1 - random.uniform(0, self.jitter)))


# What a database error's SQLSTATE says about retrying it (PostgreSQL, appendix A).
# The database away or failing over (a standby that is read-only until promoted, a
# server shutting down or not yet accepting connections, out of resources or failing
# at its I/O: classes 08, 53, 57P, 58), and contention between
# sessions (serialization failures, deadlocks, a lock wait that timed out), are never
# the message's fault: they are retried without limit.
_WAIT_FOR_DATABASE = ("08", "53", "57P", "58", "25006", "40001", "40P01", "55P03")
# A statement cancelled (``statement_timeout``) may be the message's own doing (a
# statement too heavy for it): retried, but it exhausts like any unexpected error.
_RETRY_A_WHILE = ("57014",)
# The data cannot be stored however often it is tried: a value too long for its column,
# out of range, not valid in the encoding, NUL bytes (class 22), or past a limit of the
# server's, such as an index row too large (class 54). Dead-lettered at once.
_NEVER_STORABLE = ("22", "54")


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a database error, raw (psycopg) or wrapped by SQLAlchemy."""
    origin = error.orig if isinstance(error, DBAPIError) else error
    code = getattr(origin, "sqlstate", None)
    return code if isinstance(code, str) else None


def _matches(code: str | None, prefixes: tuple[str, ...]) -> bool:
    return code is not None and code.startswith(prefixes)


def _is_database_unavailable(error: BaseException) -> bool:
    if isinstance(error, (DisconnectionError, PoolTimeout)):  # a pool with no connection free is contention
        return True
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    code = sqlstate(error)
    if code is not None:
        return _matches(code, _WAIT_FOR_DATABASE)
    # No SQLSTATE: the driver could not reach the server, or lost it.
    return isinstance(error, (OperationalError, DriverOperationalError))


def _is_unstorable(error: BaseException) -> bool:
    # A driver-side DataError (psycopg refuses NUL bytes in text before sending) has no SQLSTATE.
    return _matches(sqlstate(error), _NEVER_STORABLE) or isinstance(error, (DataError, DriverDataError))


def describe(error: BaseException) -> str:
    """The reason a failure is logged and dead-lettered with.

    A database error is named by its class, SQLSTATE and primary message only: the
    server's DETAIL ("Failing row contains (…)") and SQLAlchemy's text (the statement,
    and its parameters unless hidden) would carry addresses and phone numbers.
    """
    code = sqlstate(error)
    if code is not None:
        origin = error.orig if isinstance(error, DBAPIError) else error
        primary = getattr(getattr(origin, "diag", None), "message_primary", None)
        return f"database error {type(origin).__name__} (SQLSTATE {code}): {primary or 'no message'}"
    if isinstance(error, DBAPIError):
        origin = error.orig
        return f"database error {type(origin).__name__}: {str(origin).splitlines()[0] if str(origin) else 'no message'}"
    return str(error) or type(error).__name__


def decide(error: BaseException | None, failed_attempts: int, policy: RetryPolicy) -> Decision:
    """``failed_attempts``: how many attempts failed before this one."""
    if error is None:
        return Decision(Verdict.ACK)
    error_class = error.error_class if isinstance(error, (PermanentError, TransientError)) else type(error).__name__
    reason = describe(error)
    if isinstance(error, PermanentError) or _is_unstorable(error):
        return Decision(Verdict.DEAD_LETTER, reason=reason, error_class=error_class)
    attempt = failed_attempts + 1
    if isinstance(error, TransientError):
        exhausts, at_least = error.exhausts, error.retry_after_s or 0.0
    else:
        # The database being away is never the message's fault: wait for it without limit.
        # Anything else unexpected is retried a while, then dead-lettered for a human.
        exhausts, at_least = not _is_database_unavailable(error), 0.0
    if exhausts and attempt >= policy.max_attempts:
        return Decision(
            Verdict.DEAD_LETTER, reason=f"gave up after {attempt} attempts: {reason}", error_class=error_class
        )
    tier = policy.tier(attempt, at_least)
    return Decision(
        Verdict.RETRY,
        delay_s=tier,
        reason=reason,
        error_class=error_class,
        min_delay_s=min(at_least, tier),
        wait_s=at_least if at_least > tier else 0.0,
    )


def safe_text(error: BaseException) -> str:
    """An error's class and text, even when its text cannot be had; at most 500 characters of it."""
    try:
        text = str(error)
    except Exception:
        text = ""
    return f"{type(error).__name__}: {text[:500]}" if text else type(error).__name__


def refused(reason: str) -> Decision:
    """A message refused before any handler sees it (an encoding other than UTF-8): dead-lettered at once."""
    return Decision(Verdict.DEAD_LETTER, reason=reason, error_class=PermanentError.error_class)


def consumer_failure(error: BaseException) -> Decision:
    """The worker's own path failed on a message: that message is dead-lettered, with why."""
    return Decision(
        Verdict.DEAD_LETTER,
        reason=f"the consumer could not take this message: {safe_text(error)}",
        error_class=type(error).__name__,
    )
