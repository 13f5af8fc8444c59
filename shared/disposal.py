"""Disposing of deliveries on one channel, as the failure policy decided.

ack: applied.  retry: a copy with the attempt counted goes to a delay queue (or waits in
process on the embedded broker), then the original is acked.  dead letter: a copy with
the reason goes to the service's ``.dlq``, then the original is acked.  Every copy is
published ``mandatory`` with a confirm before its original is acked.  A copy the broker
returns (its queue deleted, a tier the topology lacks) is published once more after the
service's topology is declared again; returned again, it raises Unroutable and its
original stays unacknowledged (the worker reconnects, the broker delivers it again).

A copy keeps the original's body, content type and content encoding exactly, absent
ones absent: what it was, it stays, so a replay of it is judged like the original.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import time
from datetime import timedelta
from typing import Any, Callable, Iterable

from shared import naming
from shared.broker import Publisher, Unroutable
from shared.db import utcnow
from shared.delivery import Delivery
from shared.failure import Decision, RetryPolicy, Verdict
from shared.headers import read_instant
from shared.logging import get_logger
from shared.redaction import redact_text

MAX_HEADER_TEXT = 1000


class DelayedRetries:
    """The embedded broker's retry queues: it has no TTL or dead-lettering."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Delivery]] = []
        self._ids = itertools.count()

    def add(self, due: float, delivery: Delivery) -> None:
        heapq.heappush(self._heap, (due, next(self._ids), delivery))

    def due(self) -> list[Delivery]:
        now, ready = time.monotonic(), []
        while self._heap and self._heap[0][0] <= now:
            ready.append(heapq.heappop(self._heap)[2])
        return ready


class Disposer:
    """``max_wait_s``: the longest wait a failure may ask for (OMS_MAX_RETRY_AFTER_S); a
    not-before further ahead is cut to it.  ``redeclare``: declares the service's topology
    again, after a copy came back unroutable."""

    def __init__(
        self,
        *,
        service: str,
        policy: RetryPolicy,
        publisher: Publisher,
        embedded: bool,
        delayed: DelayedRetries,
        max_wait_s: float = 3600,
        redeclare: Callable[[], object] | None = None,
    ):
        self.service = service
        self.queue_name = naming.work_queue(service)
        self._policy = policy
        self._publisher = publisher
        self._embedded = embedded
        self._delayed = delayed
        self._max_wait_s = max_wait_s
        self._redeclare = redeclare
        self._unacked: set[int] = set()
        self._log = get_logger(service=service, queue=self.queue_name)

    # A message: py-amqp's, as shared/delivery.py wraps it, or the embedded broker's kombu Message.
    def received(self, message: Any) -> None:
        self._unacked.add(message.delivery_tag)

    def _ack(self, message: Any) -> None:
        message.ack()
        self._unacked.discard(message.delivery_tag)

    def ack_all(self, messages: list[Any]) -> None:
        """Acks applied deliveries, a contiguous run of them with one ``multiple`` ack."""
        if self._embedded or len(messages) < 2:
            # The embedded broker's channel ignores ``multiple``.
            for message in messages:
                self._ack(message)
            return
        by_tag = {m.delivery_tag: m for m in messages}
        upto, singles = ack_plan(self._unacked, by_tag)
        if upto is not None:
            by_tag[upto].ack(multiple=True)
            self._unacked = {tag for tag in self._unacked if tag > upto}
        for tag in singles:
            self._ack(by_tag[tag])

    def dispose(self, message: Any, delivery: Delivery, decision: Decision) -> None:
        if decision.verdict is Verdict.ACK:
            self._ack(message)
            return
        headers = self._failure_headers(delivery, decision)
        if decision.verdict is Verdict.RETRY:
            wait_s = min(decision.wait_s, self._max_wait_s)
            if wait_s:
                headers[naming.HEADER_NOT_BEFORE] = (utcnow() + timedelta(seconds=wait_s)).isoformat()
            self._delay(
                delivery, headers, decision.delay_s, self._policy.jittered(decision.delay_s, decision.min_delay_s)
            )
            self._log.warning(
                "handler failed, will retry",
                message_id=delivery.message_id,
                event_type=delivery.event_type,
                attempt=headers[naming.HEADER_ATTEMPTS],
                retry_in_s=wait_s or decision.delay_s,
                error_class=decision.error_class,
                error=headers[naming.HEADER_ERROR_MESSAGE],
            )
        else:
            self._publish_copy(delivery, naming.dead_letter_queue(self.service), headers)
            self._log.error(
                "message dead-lettered",
                message_id=delivery.message_id,
                event_type=delivery.event_type,
                error_class=decision.error_class,
                reason=headers[naming.HEADER_ERROR_MESSAGE],
                dead_letter_queue=naming.dead_letter_queue(self.service),
            )
        self._ack(message)

    def wait_out(self, message: Any, delivery: Delivery) -> bool:
        """A delivery back from its delay tier before the moment its failure asked for (a
        Retry-After longer than every tier) goes round again, unhandled, its attempts
        unchanged; True if it did.

        Only a delivery through oms.retry still has the header (shared/delivery.py drops it
        from any other).  A moment without a timezone is UTC; an unreadable one is handled
        now; one further ahead than ``max_wait_s`` is cut to that, so no message is parked
        for longer whatever the header says.
        """
        not_before = read_instant(delivery.headers.get(naming.HEADER_NOT_BEFORE))
        if not_before is None:
            return False
        now = utcnow()
        left_s = (not_before - now).total_seconds()  # aware datetimes: never overflows
        if left_s <= 0:
            return False
        headers = {name: value for name, value in delivery.headers.items() if name != "x-death"}  # the broker's
        if left_s > self._max_wait_s:
            self._log.warning(
                "a not-before beyond the longest wait allowed is cut to it",
                message_id=delivery.message_id,
                asked_s=left_s,
                max_wait_s=self._max_wait_s,
            )
            left_s = self._max_wait_s
            headers[naming.HEADER_NOT_BEFORE] = (now + timedelta(seconds=left_s)).isoformat()
        tier = self._policy.tier(1, left_s)
        self._delay(delivery, headers, tier, min(tier, left_s))
        self._ack(message)
        self._log.info(
            "waiting out the requested delay",
            message_id=delivery.message_id,
            event_type=delivery.event_type,
            retry_in_s=round(left_s, 3),
        )
        return True

    def _delay(self, delivery: Delivery, headers: dict[str, Any], tier: float, delay_s: float) -> None:
        if self._embedded:
            self._delayed.add(time.monotonic() + delay_s, dataclasses.replace(delivery, headers=headers))
        else:
            self._publish_copy(delivery, naming.retry_queue(self.service, tier), headers, expiration=delay_s)

    def _publish_copy(
        self,
        delivery: Delivery,
        routing_key: str,
        headers: dict[str, Any],
        expiration: float | None = None,
        exchange: str = "",
    ) -> None:
        def publish() -> None:
            self._publisher.publish(
                delivery.body,
                exchange=exchange,
                routing_key=routing_key,
                message_id=delivery.message_id,
                event_type=delivery.event_type,
                headers=headers,
                content_type=delivery.content_type,
                content_encoding=delivery.content_encoding,
                expiration=expiration,
            )

        try:
            publish()
        except Unroutable as returned:
            if self._redeclare is None:
                raise
            self._log.error(
                "a retry or dead-letter copy was returned; declaring the topology again",
                message_id=delivery.message_id,
                error=str(returned),
            )
            self._redeclare()
            publish()  # returned again: Unroutable, and the original stays unacknowledged

    def _failure_headers(self, delivery: Delivery, decision: Decision) -> dict[str, Any]:
        now = utcnow().isoformat()
        headers = dict(delivery.headers)
        headers.pop("x-death", None)
        headers.pop(naming.HEADER_NOT_BEFORE, None)  # this failure's own wait, if any, is set anew
        headers.update(
            {
                naming.HEADER_ATTEMPTS: delivery.failed_attempts + 1,
                naming.HEADER_SERVICE: self.service,
                naming.HEADER_QUEUE: self.queue_name,
                naming.HEADER_ROUTING_KEY: headers.get(naming.HEADER_ROUTING_KEY, delivery.routing_key),
                naming.HEADER_ERROR_CLASS: decision.error_class,
                naming.HEADER_ERROR_MESSAGE: redact_text(decision.reason)[:MAX_HEADER_TEXT],
                naming.HEADER_FIRST_FAILURE: headers.get(naming.HEADER_FIRST_FAILURE, now),
                naming.HEADER_LAST_FAILURE: now,
            }
        )
        return headers

    def release_due_retries(self) -> None:
        # Through oms.retry, like a copy back from a broker's delay queue: its headers are ours.
        for delivery in self._delayed.due():
            self._publish_copy(delivery, self.queue_name, delivery.headers, exchange=naming.RETRY_EXCHANGE)


def ack_plan(unsettled: Iterable[int], acking: Iterable[int]) -> tuple[int | None, list[int]]:
    """How to ack ``acking``: one ``multiple`` ack up to a tag, then the rest one by one.

    ``basic.ack(multiple)`` acks every unsettled delivery up to its tag, so it may cover
    only a run of tags that are all being acked now.
    """
    acking = set(acking)
    upto = None
    for tag in sorted(unsettled):
        if tag not in acking:
            break
        upto = tag
    return upto, sorted(tag for tag in acking if upto is None or tag > upto)
