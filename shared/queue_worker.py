"""A queue worker: consumes one work queue, runs the handler, then disposes of each message (ack, retry copy or dead letter).

The connection thread only talks to the broker (drain, heartbeats, ack, publish); handlers
run on worker threads so a slow handler never starves heartbeats.  After a lost
connection it reconnects with backoff, declares its queues again and resumes consuming.
On stop it cancels its consumer, lets running handlers finish and disposes of them; messages
not started yet go back to the broker when the channel closes.

Each arrival is read into a ``Delivery`` (shared/delivery.py: nothing it carries is
trusted), decoded once, and handed to a handler thread; what the threads finished is
settled back on the connection thread (shared/settling.py: the policy's decision, the
disposal, the hooks).

With ``batching`` the worker hands everything that has arrived (up to the batch size) to
one batch: one database transaction for all of them (shared/batch.py), then the applied
ones are acked together and each failed one is disposed of alone, as the policy decides.
While a batch runs, the next one arrives (the prefetch holds two batches).

With an ``ordering_key`` (a function of a delivery, e.g. its shipment id) and several
handler threads, deliveries with the same key always go to the same thread
(``KeyedExecutor``), so they are handled one after the other in the order they arrived,
while different keys run side by side.

A body in another encoding than UTF-8 is dead-lettered undecoded; whatever fails in the
worker's own path (reading the message, its ordering key, the not-before check, disposing
of it) dead-letters that one message with the error as its reason: the connection thread
never dies of a message.
"""

from __future__ import annotations

import collections
import queue
import socket
import threading
import time
import uuid
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence, cast

from kombu.exceptions import OperationalError as BrokerUnreachable

from shared import naming
from shared.amqp_io import UNDECODABLE_HEADERS
from shared.batch import Handled
from shared.broker import Publisher, Subscription, Topology, Unroutable, is_embedded, keep_connected
from shared.delivery import Delivery, Work, bare_delivery, read_delivery, received
from shared.disposal import DelayedRetries, Disposer
from shared.failure import RetryPolicy, refused
from shared.headers import encoding_refusal
from shared.logging import get_logger
from shared.settling import Finished, Hook, Lost, Settler

# How long the connection thread waits for a frame while work is in hand: it also
# disposes of finished work, so this bounds the delay between a commit and its ack.
BUSY_DRAIN_S = 0.005
IDLE_DRAIN_S = 0.2

Handler = Callable[[Delivery], None]
OrderingKey = Callable[[Delivery], "str | None"]


class KeyedExecutor:
    """``threads`` single-thread executors: one key, one thread (its order kept); no key, any."""

    def __init__(self, threads: int, key: OrderingKey, thread_name_prefix: str):
        self._lanes = [ThreadPoolExecutor(1, f"{thread_name_prefix}-{n}") for n in range(threads)]
        self._key = key
        self._next = 0

    def submit(self, fn: Callable[..., None], work: Work, *args: Any) -> Future[None]:
        key = self._key(work[0][1])
        if key is None:
            lane, self._next = self._next, (self._next + 1) % len(self._lanes)
        else:
            lane = zlib.crc32(key.encode()) % len(self._lanes)
        return self._lanes[lane].submit(fn, work, *args)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        for lane in self._lanes:
            lane.shutdown(wait=wait, cancel_futures=cancel_futures)


@dataclass(frozen=True)
class Batching:
    """``run(handle, deliveries)`` applies them in one transaction (shared/batch.run_batch)."""

    size: int
    run: Callable[[Handler, Sequence[Delivery]], list[Handled]]


def _broker_lost(connection: Any) -> Lost:
    # A reconnect while the broker is still down fails in ensure_connection, which kombu
    # re-raises as its OperationalError (no OSError): the same lost broker.  A channel the
    # broker closed, or a copy it returned twice, is mended the same way: a new connection
    # declares the topology again and gets the unacknowledged messages back.
    return cast(
        Lost,
        connection.connection_errors
        + connection.channel_errors
        + (OSError, ConnectionError, BrokerUnreachable, Unroutable),
    )


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
        after_disposal: list[Hook] | None = None,
        batching: Batching | None = None,
        ordering_key: OrderingKey | None = None,
        max_wait_s: float = 3600,
        decode: Callable[[Delivery], Delivery] | None = None,
    ):
        self.service = subscription.service
        self.queue_name = naming.work_queue(self.service)
        self._url = amqp_url
        self._topology = topology
        self._subscription = subscription
        self._handle = handle
        self._decode = decode
        self._policy = policy
        self._stop = stop
        self._batching = batching if batching is not None and batching.size > 1 else None
        self._prefetch = max(prefetch, 2 * self._batching.size) if self._batching else prefetch
        self._concurrency = concurrency
        self._ordering_key = ordering_key if concurrency > 1 and self._batching is None else None
        self._after_disposal = after_disposal or []
        self._embedded = is_embedded(amqp_url)
        self._delayed = DelayedRetries()
        self._max_wait_s = max_wait_s
        self._returned_last = False  # the last session ended on a twice-returned copy
        self._log = get_logger(service=self.service, queue=self.queue_name)
        self.ready = threading.Event()

    def run(self) -> None:
        keep_connected(
            self._url, self._stop, self._session, recoverable=_broker_lost, lost=self._lost, max_backoff_s=30
        )
        self._log.info("worker stopped")

    def _session(self, connection: Any, connected: Callable[[], None]) -> None:
        self._topology.declare(connection, services=[self.service])
        if not self._returned_last:  # a copy returned again and again backs off like an outage
            connected()
        self._returned_last = False
        self._consume(connection)

    def _lost(self, error: BaseException, retry_in_s: float) -> None:
        self.ready.clear()
        self._returned_last = isinstance(error, Unroutable)
        if self._returned_last:
            self._log.error(
                "a retry or dead-letter copy was returned twice; its original stays unacknowledged, reconnecting",
                error=str(error),
                retry_in_s=retry_in_s,
            )
            return
        self._log.warning("broker connection lost, reconnecting", error=str(error), retry_in_s=retry_in_s)

    def _consume(self, connection: Any) -> None:
        disposer = Disposer(
            service=self.service,
            policy=self._policy,
            publisher=Publisher(connection),
            embedded=self._embedded,
            delayed=self._delayed,
            max_wait_s=self._max_wait_s,
            redeclare=lambda: self._topology.declare(connection, services=[self.service]),
        )
        lost = _broker_lost(connection)
        settler = Settler(
            disposer=disposer,
            policy=self._policy,
            hooks=self._after_disposal,
            lost=lost,
            log=self._log,
            batched=self._batching is not None,
        )
        done: Finished = queue.Queue()
        channel = connection.channel()
        channel.auto_decode = False  # py-amqp would decode a body by its content_encoding: it stays bytes
        channel.basic_qos(0, self._prefetch, False)
        futures: set[Future[None]] = set()
        arrived: collections.deque[Any] = collections.deque()  # delivered by the broker, not yet taken
        pending: Work = []  # batching: taken, not yet in a batch

        def submit(work: Work) -> None:
            future = executor.submit(self._run, work, done)
            futures.add(future)
            future.add_done_callback(futures.discard)

        def on_message(message: Any) -> None:
            # The broker's callback only notes the arrival. It runs inside drain_events, and
            # so also inside the confirm wait of any copy being published: a copy published
            # from here would nest one confirm wait in another on the same channel, and one
            # basic.ack(multiple) then answers the inner wait and leaves the outer one waiting
            # for ever (the connection thread stops until the broker drops it for missed
            # heartbeats). Every arrival is taken in the loop below instead.
            disposer.received(message)
            arrived.append(message)

        def admit() -> None:
            """Takes what has arrived: refused at once, waited out, or handed to a handler."""
            while arrived:
                message = arrived.popleft()
                delivery = None
                try:
                    delivery = read_delivery(message)
                    dropped = (message.properties or {}).get(UNDECODABLE_HEADERS)
                    if dropped:
                        self._log.warning("unreadable headers dropped", message_id=delivery.message_id, why=dropped)
                    refusal = encoding_refusal(delivery.content_encoding, message.headers)
                    if refusal is not None:
                        disposer.dispose(message, delivery, refused(refusal))
                    elif disposer.wait_out(message, delivery):
                        continue
                    else:
                        if self._decode is not None:
                            delivery = self._decode(delivery)  # once, on arrival: the ordering key reads it too
                        if self._batching:
                            pending.append((message, delivery))
                        else:
                            submit([(message, delivery)])
                except lost:
                    raise
                except Exception as error:  # the message's fault or ours: it, not the worker, stops here
                    settler.dead_letter_anyway(message, delivery or bare_delivery(message), error)

        executor: KeyedExecutor | ThreadPoolExecutor
        if self._ordering_key is not None:
            executor = KeyedExecutor(self._concurrency, self._ordering_key, f"{self.service}-handler")
        else:
            executor = ThreadPoolExecutor(max_workers=self._concurrency, thread_name_prefix=f"{self.service}-handler")
        consumer_tag = f"{self.service}-{uuid.uuid4().hex}"
        channel.basic_consume(
            queue=self.queue_name,
            no_ack=False,
            consumer_tag=consumer_tag,
            callback=lambda message: on_message(received(message)),
        )
        self.ready.set()
        self._log.info(
            "consuming",
            prefetch=self._prefetch,
            concurrency=self._concurrency,
            batch=self._batching.size if self._batching else 1,
        )
        try:
            while not self._stop.is_set():
                try:
                    connection.drain_events(timeout=BUSY_DRAIN_S if futures else IDLE_DRAIN_S)
                except socket.timeout:
                    pass
                # Every turn, not only when idle: a busy queue must not starve heartbeats.
                connection.heartbeat_check()
                admit()
                if pending and len(futures) < self._concurrency:
                    self._take_buffered(connection, pending, admit)
                    while pending and len(futures) < self._concurrency:  # pending fills only when batching
                        submit(pending[: cast(Batching, self._batching).size])
                        del pending[: cast(Batching, self._batching).size]
                settler.settle(done)
                disposer.release_due_retries()
            # Stop: take no more; what has not started goes back to the broker unacked
            # when the channel closes, what is running is finished and disposed of.
            channel.basic_cancel(consumer_tag)
            arrived.clear()
            pending.clear()
            for future in list(futures):
                future.cancel()
            deadline = time.monotonic() + 60
            while (futures or not done.empty()) and time.monotonic() < deadline:
                settler.settle(done, wait_s=0.1)
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
            self.ready.clear()
            try:
                channel.close()
            except Exception:
                pass

    def _take_buffered(self, connection: Any, pending: Work, admit: Callable[[], None]) -> None:
        """Whatever has already arrived joins the batch about to start."""
        while len(pending) < cast(Batching, self._batching).size:  # only when batching
            try:
                connection.drain_events(timeout=0)
            except socket.timeout:
                return
            finally:
                admit()

    def _run(self, work: Work, done: Finished) -> None:
        deliveries = [delivery for _, delivery in work]
        if self._batching:
            started = time.perf_counter()
            try:
                outcomes = self._batching.run(self._handle, deliveries)
            except BaseException as exc:  # no transaction to begin (the database away): none applied
                outcomes = [Handled(exc, time.perf_counter() - started)] * len(deliveries)
        else:
            started = time.perf_counter()
            try:
                self._handle(deliveries[0])
                error = None
            except BaseException as exc:  # a handler's failure is data for the policy
                error = exc
            outcomes = [Handled(error, time.perf_counter() - started)]
        done.put((work, outcomes))
