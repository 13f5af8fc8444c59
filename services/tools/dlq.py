"""Dead letters for operators: read, replay and purge the services' ``.dlq`` queues.

This speaks pika, not kombu, on purpose: the guarantees below hang on AMQP details
kombu hides — ``basic_get`` without ack, an ack per delivery tag, a publish that
blocks for its own confirm (``mandatory``, so a missing work queue is an error, not a
silent drop), and closing exactly the channel that holds the unacked messages.

Reading never loses or reorders a dead letter: messages are fetched unacked on one
channel and handed back by closing it. A classic queue puts returned messages back in
their original positions (checked on RabbitMQ 3.10, acks in between included); a
``basic_nack(requeue=True)`` per message would not be any safer and costs a round trip.
Quorum queues would return them in another order and count a delivery for each read,
which is why dead-letter queues are classic even with ``OMS_QUEUE_TYPE=quorum``.

Replay publishes the original body to the service's work queue through ``oms.retry``
(the services trust their own ``x-oms-`` headers only on what comes through it, so the
replay's audit headers reach the service), waits for the broker's confirm, and only then
acks the dead letter: a crash in between leaves a duplicate, which the services' inbox
absorbs — never a loss.  Content type and encoding go back exactly as they came, absent
ones absent, so a replayed message is judged as its original was.
Every pass reads at most the messages that were in the queue when it started, so
messages that fail again during a replay are not replayed a second time.
"""

from __future__ import annotations

import ssl
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pika
from kombu import Connection as KombuConnection

from services.tools.dlq_model import DeadLetter, Selector, replay_headers
from shared import naming


class DlqError(RuntimeError):
    """An operator-facing failure: the message says what went wrong and what to do."""


# ---- names ---------------------------------------------------------------------------


def services_with_queues() -> list[str]:
    """Services that consume a work queue, hence have a dead-letter queue."""
    from services.runtime.registry import CONSUMERS

    return list(CONSUMERS)


def resolve_service(name: str) -> str:
    """``shipper``, ``oms-shipments.shipper`` or ``oms-shipments.shipper.dlq`` → ``shipper``."""
    for service in services_with_queues():
        if name in (service, naming.work_queue(service), naming.dead_letter_queue(service)):
            return service
    known = ", ".join(naming.dead_letter_queue(s) for s in services_with_queues())
    raise DlqError(f"no dead-letter queue {name!r}; known: {known}")


# ---- connection ----------------------------------------------------------------------


def open_connection(amqp_url: str, heartbeat: int = 60) -> pika.BlockingConnection:
    """A pika connection to the broker the services use.

    The URL is parsed by kombu, as the services parse it: pika reads the default
    ``amqp://…//`` as the vhost ``""``, kombu (and RabbitMQ's convention) as ``/``.
    """
    if amqp_url.startswith("memory://"):
        raise DlqError("the embedded broker (memory://) lives inside its process; point OMS_AMQP_URL at RabbitMQ")
    url = KombuConnection(amqp_url)
    parameters = pika.ConnectionParameters(
        host=url.hostname or "localhost",
        port=url.port or (5671 if url.ssl else 5672),
        virtual_host=url.virtual_host or "/",
        credentials=pika.PlainCredentials(url.userid or "guest", url.password or "guest"),
        heartbeat=heartbeat,
        blocked_connection_timeout=30,
        ssl_options=pika.SSLOptions(ssl.create_default_context()) if url.ssl else None,
    )
    try:
        return pika.BlockingConnection(parameters)
    except pika.exceptions.AMQPError as exc:
        # The exception text never holds the password; the URL is not repeated here.
        raise DlqError(
            f"cannot reach the broker at {parameters.host}:{parameters.port} vhost "
            f"{parameters.virtual_host!r}: {type(exc).__name__} {str(exc) or '(no answer)'}"
        ) from None


def queue_depth(connection: pika.BlockingConnection, queue: str) -> int | None:
    """Ready messages in ``queue``; None when it does not exist (a passive declare's 404)."""
    channel = connection.channel()
    try:
        return channel.queue_declare(queue, passive=True).method.message_count
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            return None
        raise
    finally:
        if channel.is_open:
            channel.close()


# ---- reading -------------------------------------------------------------------------


@contextmanager
def reading(connection: pika.BlockingConnection, queue: str, confirm: bool = False) -> Iterator["Reader"]:
    """A channel that fetches unacked; on exit it is closed and what was not acked goes back in order."""
    depth = queue_depth(connection, queue)
    if depth is None:
        raise DlqError(f"queue {queue} does not exist; run `oms-shipments topology declare`")
    channel = connection.channel()
    if confirm:
        channel.confirm_delivery()
    try:
        yield Reader(channel, queue, depth)
    finally:
        if channel.is_open:
            channel.close()


class Reader:
    def __init__(self, channel, queue: str, depth: int):
        self.channel, self.queue, self.depth = channel, queue, depth

    def __iter__(self) -> Iterator[tuple[int, DeadLetter]]:
        """(delivery tag, dead letter), at most the ``depth`` messages there were at the start."""
        for position in range(self.depth):
            method, properties, body = self.channel.basic_get(self.queue, auto_ack=False)
            if method is None:
                return
            yield method.delivery_tag, DeadLetter.from_delivery(self.queue, position, properties, body)

    def ack(self, tag: int) -> None:
        self.channel.basic_ack(tag)


def peek(
    connection: pika.BlockingConnection, queue: str, limit: int | None = None, offset: int = 0
) -> list[DeadLetter]:
    letters = []
    with reading(connection, queue) as reader:
        for _, letter in reader:
            if letter.position >= offset:
                letters.append(letter)
            if limit is not None and len(letters) >= limit:
                break
    return letters


@dataclass(frozen=True)
class QueueSummary:
    queue: str
    exists: bool
    count: int = 0
    scanned: int = 0
    oldest: datetime | None = None
    reasons: list[tuple[str, int]] = field(default_factory=list)  # most common error classes first


def summarize(connection: pika.BlockingConnection, queue: str, max_scan: int = 10_000) -> QueueSummary:
    if queue_depth(connection, queue) is None:
        return QueueSummary(queue, exists=False)
    reasons: Counter[str] = Counter()
    oldest, scanned = None, 0
    with reading(connection, queue) as reader:
        for _, letter in reader:
            scanned += 1
            reasons[letter.error_class or "(no reason header)"] += 1
            failed = letter.first_failure_at or letter.last_failure_at
            if failed is not None and (oldest is None or failed < oldest):
                oldest = failed
            if scanned >= max_scan:
                break
        count = reader.depth
    return QueueSummary(queue, True, count, scanned, oldest, reasons.most_common())


# ---- replay and purge ----------------------------------------------------------------


@dataclass
class Outcome:
    """One dead-letter queue's part of a replay or purge (or what it would be, dry)."""

    queue: str
    target: str | None  # the work queue replayed to; None for a purge
    taken: list[DeadLetter] = field(default_factory=list)
    scanned: int = 0
    depth: int = 0  # messages in the queue when the pass started

    @property
    def left(self) -> int:
        return self.depth - len(self.taken)


def _republish(channel, target: str, letter: DeadLetter) -> None:
    original = letter.properties
    # user_id is left out: the broker refuses one that is not the publishing user's;
    # expiration too: a replayed message must not expire on its way back.
    properties = pika.BasicProperties(
        content_type=original.content_type,
        content_encoding=original.content_encoding,
        headers=replay_headers(letter, datetime.now(timezone.utc)),
        delivery_mode=2,
        priority=original.priority,
        correlation_id=original.correlation_id,
        reply_to=original.reply_to,
        message_id=original.message_id,
        timestamp=original.timestamp,
        type=original.type,
        app_id=original.app_id,
    )
    try:
        channel.basic_publish(naming.RETRY_EXCHANGE, target, letter.body, properties, mandatory=True)
    except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
        raise DlqError(
            f"the broker did not take message {letter.message_id} for {target} "
            f"({type(exc).__name__}); it stays in {letter.queue}; "
            f"run `oms-shipments topology declare`"
        ) from None
    except pika.exceptions.ChannelClosedByBroker as exc:
        raise DlqError(
            f"the broker refused message {letter.message_id} for {target} through "
            f"{naming.RETRY_EXCHANGE} ({exc.reply_code} {exc.reply_text}); it stays in {letter.queue}; "
            f"run `oms-shipments topology declare`"
        ) from None


class _Pacer:
    """At most ``rate`` messages a second, sleeping through pika so heartbeats keep flowing."""

    def __init__(self, connection: pika.BlockingConnection, rate: float | None):
        self._connection, self._interval, self._next = connection, (1 / rate if rate else 0.0), 0.0

    def wait(self) -> None:
        if not self._interval:
            return
        delay = self._next - time.monotonic()
        if delay > 0:
            self._connection.sleep(delay)
        self._next = max(self._next, time.monotonic()) + self._interval


def _take(
    connection,
    queues: list[str],
    selector: Selector,
    *,
    replay: bool,
    limit: int | None,
    dry_run: bool,
    rate: float | None = None,
    on_taken=None,
) -> list[Outcome]:
    now = datetime.now(timezone.utc)
    pacer = _Pacer(connection, rate)
    outcomes: list[Outcome] = []
    total = 0
    for name in queues:
        service = resolve_service(name)
        outcome = Outcome(naming.dead_letter_queue(service), naming.work_queue(service) if replay else None)
        outcomes.append(outcome)
        depth = queue_depth(connection, outcome.queue)
        if depth is None or (limit is not None and total >= limit):
            outcome.depth = depth or 0  # a queue never declared holds nothing to take
            continue
        if replay and not dry_run and queue_depth(connection, outcome.target) is None:
            raise DlqError(f"work queue {outcome.target} does not exist; run `oms-shipments topology declare`")
        with reading(connection, outcome.queue, confirm=replay and not dry_run) as reader:
            outcome.depth = reader.depth
            for tag, letter in reader:
                outcome.scanned += 1
                if not selector.matches(letter, now):
                    continue
                if not dry_run:
                    if replay:
                        pacer.wait()
                        _republish(reader.channel, outcome.target, letter)
                    reader.ack(tag)
                outcome.taken.append(letter)
                total += 1
                if on_taken is not None:
                    on_taken(letter)
                if limit is not None and total >= limit:
                    break
    return outcomes


def replay(
    connection: pika.BlockingConnection,
    queues: list[str],
    selector: Selector = Selector(),
    *,
    limit: int | None = None,
    rate: float | None = None,
    dry_run: bool = False,
    on_taken=None,
) -> list[Outcome]:
    """Moves the selected dead letters back to their work queues, in order, confirmed before acked."""
    return _take(connection, queues, selector, replay=True, limit=limit, dry_run=dry_run, rate=rate, on_taken=on_taken)


def purge(
    connection: pika.BlockingConnection,
    queues: list[str],
    selector: Selector = Selector(),
    *,
    limit: int | None = None,
    dry_run: bool = False,
    on_taken=None,
) -> list[Outcome]:
    """Removes the selected dead letters for good; the others stay, in order."""
    return _take(connection, queues, selector, replay=False, limit=limit, dry_run=dry_run, on_taken=on_taken)
