"""The one place that decides what happens to a message after its handler ran.

ack: applied (or a duplicate).  retry: published to a delay queue with the attempt
counted in our own header, then acked.  dead-letter: published to the service's
``.dlq`` with the reason, then acked.  Nothing is acked without one of these.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError

from shared.errors import PermanentError, TransientError


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
    #: then waits out the rest in further rounds of the tier (shared/settling.py).
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


def _is_database_unavailable(error: BaseException) -> bool:
    if isinstance(error, (OperationalError, DisconnectionError)):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def decide(error: BaseException | None, failed_attempts: int, policy: RetryPolicy) -> Decision:
    """``failed_attempts``: how many attempts failed before this one."""
    if error is None:
        return Decision(Verdict.ACK)
    error_class = type(error).__name__
    reason = str(error) or error_class
    if isinstance(error, PermanentError):
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
    return Decision(Verdict.RETRY, delay_s=tier, reason=reason, error_class=error_class,
                    min_delay_s=min(at_least, tier), wait_s=at_least if at_least > tier else 0.0)
