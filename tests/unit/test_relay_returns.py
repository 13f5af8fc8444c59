"""Mandatory publishes: a returned event stays stored, goes again, and its subject's later events wait.

The broker itself is tested in tests/integration/test_unroutable_events.py; here the
publisher's frame handling and the relay's bookkeeping over the embedded database.
"""

from __future__ import annotations

import json
import threading

from amqp.exceptions import ChannelError
from amqp.serialization import loads
from prometheus_client import REGISTRY
from test_batch_confirms import FakeBroker, KombuConnection, outgoing

from shared.confirms import Confirms, Outgoing, StreamingPublisher
from shared.outbox import Outbox
from shared.relay import OutboxRelay, in_waves, ordering_key


class ReturningBroker(FakeBroker):
    """Script steps may also be ("return", message id): a basic.return, before the acks."""

    def frame_writer(self, frame_type, channel_id, method, args, message) -> None:
        self.arguments = loads("Bssbb", args, 0)[0]
        self.messages = getattr(self, "messages", {})
        self.messages[message.properties["message_id"]] = message
        super().frame_writer(frame_type, channel_id, method, args, message)

    def drain_events(self, timeout: float) -> None:
        if not self.script:
            raise TimeoutError  # socket.timeout
        for kind, key, multiple in self.script.pop(0):
            if kind == "return":
                for callback in self.channel_.events["basic_return"]:
                    callback(ChannelError("NO_ROUTE", reply_code=312), "oms.events", "shipment.x", self.messages[key])
            else:
                for callback in self.channel_.events[f"basic_{kind}"]:
                    callback(key, multiple)


def test_every_publish_is_mandatory_and_a_returned_one_is_reported_as_not_taken():
    broker = ReturningBroker([[("return", "id-1", None), ("ack", 3, True)], [("ack", 4, False)]])
    publisher = StreamingPublisher(KombuConnection(broker))

    confirms = publisher.publish_batch(outgoing(3))

    assert broker.arguments[3] is True, "mandatory flag"
    assert confirms == [True, False, True]
    assert set(confirms.returned) == {1} and "NO_ROUTE" in confirms.returned[1]
    assert publisher.publish_batch(outgoing(1)).returned == {}  # the next batch starts clean


def body(subject: str, n: int) -> bytes:
    return json.dumps(
        {"specversion": "1.0", "id": f"{subject}-{n}", "subject": subject, "data": {"subject": "not this one", "n": n}},
        separators=(",", ":"),
    ).encode()


def test_the_ordering_key_is_the_envelope_s_subject():
    assert ordering_key(body("PKG-1", 1)) == "PKG-1"
    assert ordering_key(b'{"id":"x","subject":"a \\"quoted\\" \\u00e7","data":{}}') == 'a "quoted" ç'
    assert ordering_key(b'{"id":"x","data":{}}') is None
    assert ordering_key(b'{"subject":7}') is None
    assert ordering_key(b'{"subject":"unterminated') is None


def test_a_batch_goes_in_waves_of_one_event_per_subject():
    keys = ["a", "b", "a", None, "a", "b", None]

    assert in_waves(keys) == [[0, 1, 3, 6], [2, 5], [4]]


class Unroutable:
    """A broker on which no queue is bound for some routing keys."""

    def __init__(self, unbound: set[str]):
        self.unbound = unbound
        self.published: list[str] = []

    def publish_batch(self, messages: list[Outgoing]) -> Confirms:
        returned = {i: "NO_ROUTE" for i, m in enumerate(messages) if m.routing_key in self.unbound}
        self.published += [m.message_id for i, m in enumerate(messages) if i not in returned]
        return Confirms([i not in returned for i in range(len(messages))], returned)


def store(db, events: list[tuple[str, int, str]]) -> None:
    with db.engine.begin() as connection:
        outbox = Outbox(connection)
        for subject, n, routing_key in events:
            outbox.add(f"{subject}-{n}", "ShipmentStatusChanged", routing_key, body(subject, n))


def returned_count(routing_key: str) -> float:
    return REGISTRY.get_sample_value("oms_outbox_returned_total", {"routing_key": routing_key}) or 0


def test_a_returned_event_stays_stored_in_its_place_and_its_subject_s_later_events_wait_behind_it(db):
    store(
        db,
        [
            ("A", 1, "shipment.status_changed.lost"),
            ("B", 1, "shipment.status_changed.shipped"),
            ("A", 2, "shipment.status_changed.shipped"),
            ("B", 2, "shipment.status_changed.delivered"),
        ],
    )
    broker = Unroutable({"shipment.status_changed.lost"})
    relay = OutboxRelay(engine=db.engine, amqp_url="memory://", stop=threading.Event(), batch=10)
    before = returned_count("shipment.status_changed.lost")

    assert relay.relay_once(broker) == 2
    assert relay.relay_once(broker) == 0
    assert broker.published == ["B-1", "B-2"]
    assert [(row.event_id, row.id) for row in db.outbox()] == [("A-1", 1), ("A-2", 3)]
    assert returned_count("shipment.status_changed.lost") == before + 2

    broker.unbound.clear()  # a queue is bound for it now
    store(db, [("A", 3, "shipment.status_changed.delivered")])
    assert relay.relay_once(broker) == 3
    assert broker.published == ["B-1", "B-2", "A-1", "A-2", "A-3"]
    assert db.outbox() == []


def test_events_held_behind_a_returned_one_never_crowd_out_other_subjects(db):
    store(
        db, [("A", n, "shipment.status_changed.lost") for n in range(3)] + [("B", 1, "shipment.status_changed.shipped")]
    )
    broker = Unroutable({"shipment.status_changed.lost"})
    relay = OutboxRelay(engine=db.engine, amqp_url="memory://", stop=threading.Event(), batch=3)

    relay.relay_once(broker)  # the first three are all A's: held
    relay.relay_once(broker)  # held ones again, and a full batch besides

    assert broker.published == ["B-1"]
    assert [row.event_id for row in db.outbox()] == [f"A-{n}" for n in range(3)]
