"""Every exchange, queue, retry and dead-letter name, derived from one place.

Queues are named ``oms-shipments.<service>``; the service's dead letters go to
``oms-shipments.<service>.dlq`` and its delayed retries wait in
``oms-shipments.<service>.delay.<seconds>s`` before they flow back to the work queue
through ``oms.retry``, the one exchange whose deliveries may carry our own headers.
"""

from __future__ import annotations

EVENTS_EXCHANGE = "oms.events"
# Retry queues dead-letter into it and `dlq replay` publishes to it; each work queue is
# bound to it under its own name. Only a delivery through it carries trusted x-oms- headers.
RETRY_EXCHANGE = "oms.retry"
PREFIX = "oms-shipments"

# Our own retry bookkeeping; x-death is the broker's and clients may not rewrite it.
OWN_HEADER_PREFIX = "x-oms-"
HEADER_ATTEMPTS = "x-oms-attempts"
HEADER_SERVICE = "x-oms-service"
HEADER_QUEUE = "x-oms-queue"
HEADER_ROUTING_KEY = "x-oms-original-routing-key"
HEADER_ERROR_CLASS = "x-oms-error-class"
HEADER_ERROR_MESSAGE = "x-oms-error-message"
HEADER_FIRST_FAILURE = "x-oms-first-failure-at"
HEADER_LAST_FAILURE = "x-oms-last-failure-at"
# A peer's Retry-After longer than the longest delay tier: the message goes round the
# longest tier again, unhandled and not counted as an attempt, until this moment (UTC, ISO).
HEADER_NOT_BEFORE = "x-oms-not-before"
HEADER_REPLAYED_FROM = "x-oms-replayed-from"
# A replay's audit trail: the failure it started over from.
HEADER_REPLAY_COUNT = "x-oms-replay-count"
HEADER_REPLAYED_AT = "x-oms-replayed-at"
HEADER_PREVIOUS_ERROR_CLASS = "x-oms-previous-error-class"
HEADER_PREVIOUS_ERROR_MESSAGE = "x-oms-previous-error-message"
HEADER_PREVIOUS_ATTEMPTS = "x-oms-previous-attempts"
HEADER_PREVIOUS_FIRST_FAILURE = "x-oms-previous-first-failure-at"
HEADER_PREVIOUS_LAST_FAILURE = "x-oms-previous-last-failure-at"


def work_queue(service: str) -> str:
    return f"{PREFIX}.{service}"


def dead_letter_queue(service: str) -> str:
    return f"{work_queue(service)}.dlq"


def retry_queue(service: str, delay_s: float) -> str:
    # ".delay.", not the ".retry." of versions before oms.retry: those queues dead-letter to
    # the default exchange, and RabbitMQ refuses to declare a queue again with other
    # arguments, so a new name lets old and new run side by side while the old ones drain.
    return f"{work_queue(service)}.delay.{delay_s:g}s"


def event_source(service: str) -> str:
    """CloudEvents ``source`` of the events a service publishes."""
    return f"/{PREFIX}/{service}"
