"""A queue worker: consumes one work queue, runs the handler, then settles each message.

The connection thread only talks to the broker (drain, heartbeats, ack, publish); handlers
run on worker threads so a slow handler never starves heartbeats.  After a lost
connection it reconnects with backoff, declares its queues again and resumes consuming.
On stop it cancels its consumer, lets running handlers finish and settles them; messages
not started yet go back to the broker when the channel closes.
"""
from __future__ import annotations

import dataclasses
import heapq
import itertools
import queue
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from kombu import Consumer

from shared import naming
from shared.broker import Publisher, Subscription, Topology, connect, is_embedded
from shared.db import utcnow
from shared.failure import Decision, RetryPolicy, Verdict, decide
from shared.logging import get_logger
from shared.redaction import redact_text

MAX_HEADER_TEXT = 1000


@dataclass(frozen=True)
class Delivery:
    """What a handler gets of a broker message: bytes and metadata, no kombu object."""

    body: bytes
    content_type: str | None
    routing_key: str
    message_id: str | None
    headers: dict = field(default_factory=dict)
    redelivered: bool = False
    event_type: str | None = None

    @property
    def failed_attempts(self) -> int:
        try:
            return int(self.headers.get(naming.HEADER_ATTEMPTS, 0))
        except (TypeError, ValueError):
            return 0


Handler = Callable[[Delivery], None]
Hook = Callable[[Delivery, Decision, float], None]


class QueueWorker:
    def __init__(
        self,
        *,
        amqp_url: str,
        topology: Topology,
        subscription: Subscription,
        handle: Handler,
        policy: RetryPolicy,
        stop: threading.Event,
        prefetch: int = 32,
        concurrency: int = 1,
        after_settle: list[Hook] | None = None,
    ):
        self.service = subscription.service
        self.queue_name = naming.work_queue(self.service)
        self._url = amqp_url
        self._topology = topology
        self._subscription = subscription
        self._handle = handle
        self._policy = policy
        self._stop = stop
        self._prefetch = prefetch
        self._concurrency = concurrency
        self._after_settle = after_settle or []
        self._embedded = is_embedded(amqp_url)
        self._delayed: list[tuple[float, int, Delivery]] = []
        self._delayed_ids = itertools.count()
        self._log = get_logger(service=self.service, queue=self.queue_name)
        self.ready = threading.Event()

    def run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            connection = connect(self._url)
            try:
                connection.ensure_connection(max_retries=1)
                self._topology.declare(connection, services=[self.service])
                backoff = 0.5
                self._consume(connection)
            except connection.connection_errors + (OSError, ConnectionError) as exc:
                self.ready.clear()
                self._log.warning("broker connection lost, reconnecting", error=str(exc), retry_in_s=backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30)
            finally:
                try:
                    connection.release()
                except Exception:
                    pass
        self._log.info("worker stopped")

    def _consume(self, connection) -> None:
        publisher = Publisher(connection)
        done: queue.Queue = queue.Queue()
        channel = connection.channel()
        channel.basic_qos(0, self._prefetch, False)
        futures: set = set()

        def on_message(message) -> None:
            delivery = Delivery(
                body=message.body if isinstance(message.body, bytes) else bytes(message.body, "utf-8"),
                content_type=message.content_type,
                routing_key=message.delivery_info.get("routing_key", ""),
                message_id=message.properties.get("message_id"),
                headers=dict(message.headers or {}),
                redelivered=bool(message.delivery_info.get("redelivered")),
                event_type=message.properties.get("type"),
            )
            future = executor.submit(self._run_handler, message, delivery, done)
            futures.add(future)
            future.add_done_callback(futures.discard)

        executor = ThreadPoolExecutor(max_workers=self._concurrency, thread_name_prefix=f"{self.service}-handler")
        consumer = Consumer(channel, queues=[self._topology.work_queue(self._subscription)], on_message=on_message, no_ack=False)
        consumer.consume()
        self.ready.set()
        self._log.info("consuming", prefetch=self._prefetch, concurrency=self._concurrency)
        try:
            while not self._stop.is_set():
                try:
                    connection.drain_events(timeout=0.2)
                except socket.timeout:
                    pass
                # Every turn, not only when idle: a busy queue must not starve heartbeats.
                connection.heartbeat_check()
                self._settle_finished(done, publisher)
                self._release_due_retries(publisher)
            # Stop: take no more; what has not started goes back to the broker unacked
            # when the channel closes, what is running is finished and settled.
            consumer.cancel()
            for future in list(futures):
                future.cancel()
            deadline = time.monotonic() + 60
            while (futures or not done.empty()) and time.monotonic() < deadline:
                self._settle_finished(done, publisher, wait_s=0.1)
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
            self.ready.clear()
            try:
                channel.close()
            except Exception:
                pass

    def _run_handler(self, message, delivery: Delivery, done: queue.Queue) -> None:
        started = time.perf_counter()
        try:
            self._handle(delivery)
            error = None
        except BaseException as exc:  # a handler's failure is data for the policy
            error = exc
        done.put((message, delivery, error, time.perf_counter() - started))

    def _settle_finished(self, done: queue.Queue, publisher: Publisher, wait_s: float = 0.0) -> None:
        first = True
        while True:
            try:
                item = done.get(timeout=wait_s) if (wait_s and first) else done.get_nowait()
            except queue.Empty:
                return
            first = False
            message, delivery, error, elapsed = item
            decision = decide(error, delivery.failed_attempts, self._policy)
            self._settle(message, delivery, decision, publisher)
            for hook in self._after_settle:
                hook(delivery, decision, elapsed)

    def _settle(self, message, delivery: Delivery, decision: Decision, publisher: Publisher) -> None:
        if decision.verdict is Verdict.ACK:
            message.ack()
            return
        headers = self._failure_headers(delivery, decision)
        if decision.verdict is Verdict.RETRY:
            if self._embedded:
                # The embedded broker has no TTL or dead-lettering: hold the retry here.
                due = time.monotonic() + self._policy.jittered(decision.delay_s, decision.min_delay_s)
                heapq.heappush(self._delayed, (due, next(self._delayed_ids), _with_headers(delivery, headers)))
            else:
                publisher.publish(
                    delivery.body,
                    exchange="",
                    routing_key=naming.retry_queue(self.service, decision.delay_s),
                    message_id=delivery.message_id,
                    event_type=delivery.event_type,
                    headers=headers,
                    content_type=delivery.content_type or "application/octet-stream",
                    expiration=self._policy.jittered(decision.delay_s, decision.min_delay_s),
                )
            self._log.warning(
                "handler failed, will retry",
                message_id=delivery.message_id,
                event_type=delivery.event_type,
                attempt=headers[naming.HEADER_ATTEMPTS],
                retry_in_s=decision.delay_s,
                error_class=decision.error_class,
                error=headers[naming.HEADER_ERROR_MESSAGE],
            )
        else:
            publisher.publish(
                delivery.body,
                exchange="",
                routing_key=naming.dead_letter_queue(self.service),
                message_id=delivery.message_id,
                event_type=delivery.event_type,
                headers=headers,
                content_type=delivery.content_type or "application/octet-stream",
            )
            self._log.error(
                "message dead-lettered",
                message_id=delivery.message_id,
                event_type=delivery.event_type,
                error_class=decision.error_class,
                reason=headers[naming.HEADER_ERROR_MESSAGE],
                dead_letter_queue=naming.dead_letter_queue(self.service),
            )
        message.ack()

    def _failure_headers(self, delivery: Delivery, decision: Decision) -> dict:
        now = utcnow().isoformat()
        headers = dict(delivery.headers)
        headers.pop("x-death", None)
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

    def _release_due_retries(self, publisher: Publisher) -> None:
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, delivery = heapq.heappop(self._delayed)
            publisher.publish(
                delivery.body,
                exchange="",
                routing_key=self.queue_name,
                message_id=delivery.message_id,
                event_type=delivery.event_type,
                headers=delivery.headers,
                content_type=delivery.content_type or "application/octet-stream",
            )


def _with_headers(delivery: Delivery, headers: dict) -> Delivery:
    return dataclasses.replace(delivery, headers=headers)
