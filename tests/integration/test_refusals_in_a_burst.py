"""Messages refused on arrival, many at once, on the real broker.

Found by the hostile suite in full runs: a refused message's dead-letter copy was published
from inside the broker's delivery callback. That callback also runs inside the confirm wait
of the copy before it, so two confirm waits nested on one channel, and a single
``basic.ack(multiple)`` for both answered the inner one only: the outer one waited for ever,
the worker stopped taking messages, and a minute later the broker dropped its connection
for missed heartbeats. Nothing is published from the callback now.
"""

from __future__ import annotations

import threading
import uuid

import pika
import pytest

import shared.queue_worker as queue_worker
from shared import naming
from shared.broker import Publisher, Subscription, Topology
from shared.failure import RetryPolicy

import harness

REFUSED = 300
NORMAL = 20


class NestingPublisher(Publisher):
    """The real publisher, noting how deep publishes on it nest (one connection thread)."""

    deepest = 0

    def __init__(self, connection):
        super().__init__(connection)
        self._depth = 0

    def publish(self, body, **kwargs):
        self._depth += 1
        NestingPublisher.deepest = max(NestingPublisher.deepest, self._depth)
        try:
            super().publish(body, **kwargs)
        finally:
            self._depth -= 1


@pytest.fixture
def nesting_publisher(monkeypatch):
    NestingPublisher.deepest = 0
    monkeypatch.setattr(queue_worker, "Publisher", NestingPublisher)
    return NestingPublisher


def test_a_burst_of_refused_messages_is_dead_lettered_and_the_messages_behind_it_are_handled(
    amqp_url, nesting_publisher
):
    service = f"burst-{uuid.uuid4().hex[:8]}"
    topology = Topology([Subscription(service, ("burst.test",))], [1.0])
    handled: list[bytes] = []
    stop = threading.Event()
    worker = queue_worker.QueueWorker(
        amqp_url=amqp_url,
        topology=topology,
        subscription=topology.subscriptions[0],
        handle=lambda delivery: handled.append(delivery.body),
        policy=RetryPolicy(3, (1.0,)),
        stop=stop,
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert worker.ready.wait(20), "the worker did not start consuming"
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        channel = connection.channel()
        # Unconfirmed, so they reach the worker as fast as the broker can deliver them.
        for n in range(REFUSED):
            channel.basic_publish(
                naming.EVENTS_EXCHANGE,
                "burst.test",
                b"\x1b\x00compressed?",
                pika.BasicProperties(content_encoding="br", headers={"compression": 1}, message_id=f"refused-{n}"),
            )
        for n in range(NORMAL):
            channel.basic_publish(
                naming.EVENTS_EXCHANGE,
                "burst.test",
                f"normal-{n}".encode(),
                pika.BasicProperties(message_id=f"normal-{n}"),
            )

        def dead_letters() -> int:
            return channel.queue_declare(naming.dead_letter_queue(service), passive=True).method.message_count

        harness.wait_until(
            lambda: dead_letters() == REFUSED and len(handled) == NORMAL,
            30,
            0.1,
            message=f"{REFUSED} refused messages dead-lettered and {NORMAL} behind them handled",
        )
        assert nesting_publisher.deepest == 1, "a copy was published while another one's confirm was awaited"
        assert channel.queue_declare(naming.work_queue(service), passive=True).method.message_count == 0
        connection.close()
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive(), "the worker did not stop"
