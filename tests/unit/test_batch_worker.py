"""A batching queue worker on the embedded broker: what arrived together is one batch, each
failure is settled alone, and a batch that could not even begin is retried, not lost."""

from __future__ import annotations

import threading
import uuid

from kombu import Connection, Producer

from shared import naming
from shared.batch import Handled
from shared.broker import Subscription, Topology
from shared.failure import PermanentError, RetryPolicy
from shared.queue_worker import Batching, QueueWorker

from fakes import take_embedded, work_until


class Run:
    def __init__(self, subscription: Subscription):
        self.subscription = subscription
        self.topology = Topology([subscription], [0.2])
        self.queue = naming.work_queue(subscription.service)
        self.batches: list[list[bytes]] = []
        with Connection("memory://") as connection:
            self.topology.declare(connection, services=[subscription.service])

    def publish(self, *bodies: bytes) -> None:
        with Connection("memory://") as connection:
            producer = Producer(connection.channel())
            for body in bodies:
                producer.publish(
                    body,
                    exchange="",
                    routing_key=self.queue,
                    content_type="application/json",
                    content_encoding="binary",
                    message_id=uuid.uuid4().hex,
                )

    def take(self, queue: str) -> list:
        return take_embedded(queue)

    def work(self, run_batch, until, timeout_s: float = 10) -> None:
        stop = threading.Event()
        worker = QueueWorker(
            amqp_url="memory://",
            topology=self.topology,
            subscription=self.subscription,
            handle=lambda delivery: None,
            policy=RetryPolicy(5, (0.2,)),
            stop=stop,
            batching=Batching(10, run_batch),
        )
        work_until(worker, stop, until, timeout_s)


def subscription() -> Subscription:
    return Subscription(f"batch-test-{uuid.uuid4().hex[:8]}", ("batch.test",))


def test_messages_that_arrived_together_are_one_batch_and_a_poison_is_dead_lettered_alone():
    run = Run(subscription())
    run.publish(b"one", b"two", b"poison", b"four", b"five")
    applied: list[bytes] = []

    def run_batch(handle, deliveries):
        run.batches.append([d.body for d in deliveries])
        outcomes = []
        for delivery in deliveries:
            if delivery.body == b"poison":
                outcomes.append(Handled(PermanentError("not a package"), 0.0))
            else:
                applied.append(delivery.body)
                outcomes.append(Handled(None, 0.0))
        return outcomes

    dead: list = []
    run.work(run_batch, until=lambda: len(applied) == 4 and (dead.extend(run.take(run.queue + ".dlq")) or dead))

    assert run.batches == [[b"one", b"two", b"poison", b"four", b"five"]]
    assert [m.body for m in dead] == [b"poison"]
    assert dead[0].headers[naming.HEADER_ERROR_MESSAGE] == "not a package"
    assert run.take(run.queue) == []


def test_a_batch_whose_transaction_could_not_begin_is_retried_not_lost():
    run = Run(subscription())
    run.publish(b"one", b"two")
    attempts: list[int] = []

    def run_batch(handle, deliveries):
        attempts.append(len(deliveries))
        if len(attempts) == 1:
            raise ConnectionRefusedError("the database is away")
        return [Handled(None, 0.0) for _ in deliveries]

    run.work(run_batch, until=lambda: sum(attempts[1:]) == 2)

    assert attempts[0] == 2
    assert run.take(run.queue + ".dlq") == []
