"""The relay publishes a batch with streaming confirms and deletes only what the broker confirmed."""

from __future__ import annotations

import threading
from collections import defaultdict

import pytest

from shared.confirms import Confirms, ConfirmTimeout, Outgoing, StreamingPublisher
from shared.outbox import Outbox, outbox_table
from shared.relay import OutboxRelay


class FakeChannel:
    """py-amqp's channel as the publisher uses it: confirm mode and the ack/nack events."""

    channel_id = 1

    def __init__(self):
        self.events = defaultdict(set)
        self.confirm_mode = False

    def confirm_select(self) -> None:
        self.confirm_mode = True


class FakeTransport:
    def __init__(self):
        self.writes: list[bytes] = []
        self._write = self.writes.append

    def write(self, data: bytes) -> None:
        self._write(data)


class FakeBroker:
    """py-amqp's connection: frames written through its transport; a drain answers with
    the next scripted confirm frames: ("ack"|"nack", tag, multiple)."""

    def __init__(self, script: list[list[tuple[str, int, bool]]]):
        self.channel_ = FakeChannel()
        self.transport = FakeTransport()
        self.script = list(script)
        self.drains = 0
        self.published: list[tuple[str, str]] = []

    def channel(self) -> FakeChannel:
        return self.channel_

    def frame_writer(self, frame_type, channel_id, method, args, message) -> None:
        assert self.channel_.confirm_mode
        assert message.properties["delivery_mode"] == 2
        self.published.append((message.properties["message_id"], method))
        self.transport.write(memoryview(b"frame %d" % len(self.published)))

    def drain_events(self, timeout: float) -> None:
        self.drains += 1
        if not self.script:
            raise TimeoutError  # socket.timeout
        for kind, tag, multiple in self.script.pop(0):
            for callback in self.channel_.events[f"basic_{kind}"]:
                callback(tag, multiple)


class KombuConnection:
    def __init__(self, broker: FakeBroker):
        self.connection = broker


def outgoing(n: int) -> list[Outgoing]:
    return [Outgoing(b"{}", f"shipment.status_changed.s{i}", f"id-{i}", "ShipmentStatusChanged") for i in range(n)]


def test_a_batch_is_written_whole_in_few_socket_writes_before_any_confirm_is_awaited():
    broker = FakeBroker([[("ack", 5, True)]])
    publisher = StreamingPublisher(KombuConnection(broker))

    assert publisher.publish_batch(outgoing(5)) == [True] * 5
    assert [message_id for message_id, _ in broker.published] == [f"id-{i}" for i in range(5)]
    assert broker.transport.writes == [b"frame 1frame 2frame 3frame 4frame 5"]  # fewer than _WRITE_EVERY
    assert broker.drains == 1


def test_confirms_arriving_one_by_one_and_in_runs_are_all_counted():
    broker = FakeBroker([[("ack", 2, True)], [("ack", 4, False)], [("ack", 3, False), ("ack", 6, True)]])
    publisher = StreamingPublisher(KombuConnection(broker))

    assert publisher.publish_batch(outgoing(6)) == [True] * 6


def test_a_nacked_publish_is_reported_and_the_next_batch_numbers_on():
    broker = FakeBroker([[("ack", 1, False), ("nack", 2, False), ("ack", 3, False)], [("ack", 5, True)]])
    publisher = StreamingPublisher(KombuConnection(broker))

    assert publisher.publish_batch(outgoing(3)) == [True, False, True]
    assert publisher.publish_batch(outgoing(2)) == [True, True]


def test_confirms_that_never_come_are_a_connection_failure():
    broker = FakeBroker([[("ack", 1, False)]])
    publisher = StreamingPublisher(KombuConnection(broker), timeout_s=0.05)

    with pytest.raises(ConfirmTimeout, match="1 publishes unconfirmed"):
        publisher.publish_batch(outgoing(2))


class ScriptedPublisher:
    def __init__(self, answers: list[bool]):
        self.answers = answers
        self.batches: list[list[str]] = []

    def publish_batch(self, messages: list[Outgoing]) -> Confirms:
        self.batches.append([m.message_id for m in messages])
        return Confirms(self.answers[: len(messages)])


def store(db, count: int) -> None:
    with db.engine.begin() as connection:
        outbox = Outbox(connection)
        for n in range(count):
            outbox.add(f"evt-{n}", "ShipmentStatusChanged", "shipment.status_changed.pending", b"{}")


def relay(db) -> OutboxRelay:
    stop = threading.Event()
    stop.set()  # no pause after a refusal
    return OutboxRelay(engine=db.engine, amqp_url="memory://", stop=stop, batch=10)


def test_the_relay_publishes_in_stored_order_and_deletes_the_confirmed_batch(db):
    store(db, 3)
    publisher = ScriptedPublisher([True, True, True])

    assert relay(db).relay_once(publisher) == 3
    assert publisher.batches == [["evt-0", "evt-1", "evt-2"]]
    assert db.count(outbox_table) == 0


def test_events_the_broker_refused_stay_stored_and_go_again_alone(db):
    store(db, 3)
    first = ScriptedPublisher([True, False, True])

    assert relay(db).relay_once(first) == 2
    assert [row.event_id for row in db.outbox()] == ["evt-1"]
    second = ScriptedPublisher([True])
    relay(db).relay_once(second)
    assert second.batches == [["evt-1"]]
    assert db.count(outbox_table) == 0


def test_a_publish_failure_leaves_every_event_stored(db):
    store(db, 2)

    class Broken:
        def publish_batch(self, messages):
            raise ConnectionError("connection reset")

    with pytest.raises(ConnectionError):
        relay(db).relay_once(Broken())
    assert db.count(outbox_table) == 2
