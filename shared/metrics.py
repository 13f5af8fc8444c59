"""Prometheus metrics of the plumbing, fed by small hooks (consumer, relay, HTTP clients)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

from shared.delivery import Delivery
from shared.failure import Decision, Verdict

MESSAGES = Counter(
    "oms_messages_total",
    "Messages disposed of by a consumer, by outcome (ack, retry, dead_letter).",
    ["queue", "event_type", "outcome"],
)
MESSAGES_FAILED = Counter(
    "oms_messages_failed_total",
    "Handler failures, by error class.",
    ["queue", "event_type", "error_class"],
)
HANDLER_SECONDS = Histogram(
    "oms_handler_seconds",
    "Time a handler took for one message.",
    ["queue", "event_type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
OUTBOX_PUBLISHED = Counter("oms_outbox_published_total", "Events the outbox relay published with confirms.")
OUTBOX_BACKLOG = Gauge("oms_outbox_backlog", "Events stored in the outbox, not yet published.")
OUTBOX_OLDEST_AGE = Gauge("oms_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox event.")
OUTBOX_RETURNED = Counter(
    "oms_outbox_returned_total",
    "Events the broker returned to the outbox relay (no queue bound for their "
    "routing key); they stay stored and go again each round.",
    ["routing_key"],
)
HTTP_SECONDS = Histogram(
    "oms_http_client_seconds",
    "Outgoing HTTP requests to carriers and Omnitron.",
    ["target", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


#: The label of a message whose type is none of the known ones (or missing): a sender
#: writes whatever it likes into a message's type, and every distinct label value is a new
#: series kept for the life of the process.
OTHER = "other"


def count_disposed(queue: str, known_event_types: frozenset[str]) -> Callable[[Delivery, Decision, float], None]:
    """A consumer hook: counts each message disposed of and times its handler, by event type
    (one of ``known_event_types``, or "other")."""

    def hook(delivery: Delivery, decision: Decision, elapsed_s: float) -> None:
        event_type = delivery.event_type if delivery.event_type in known_event_types else OTHER
        outcome = decision.verdict.value
        MESSAGES.labels(queue, event_type, outcome).inc()
        HANDLER_SECONDS.labels(queue, event_type).observe(elapsed_s)
        if decision.verdict is not Verdict.ACK:
            MESSAGES_FAILED.labels(queue, event_type, decision.error_class).inc()

    return hook


def http_status_label(status: int | None) -> str:
    """A peer answers with whatever number it likes: only real HTTP statuses become a label."""
    if status is None:
        return "error"
    return str(status) if 100 <= status <= 599 else OTHER


def observe_http(target: str, method: str, status: int | None, elapsed_s: float) -> None:
    HTTP_SECONDS.labels(target, method, http_status_label(status)).observe(elapsed_s)
