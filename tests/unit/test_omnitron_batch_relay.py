"""The Omnitron publisher's batches: several packages in one bulk call, a 4xx split, each shipment in order."""

from __future__ import annotations

from functools import partial

from contracts import parse_event
from services.omnitron_publisher.batch import BatchRelay, HeldBack
from services.omnitron_publisher.handlers import relay_to_omnitron
from services.omnitron_publisher.omnitron import BULK_STATUS_PATH, Sent
from services.runtime.pipeline import Pipeline
from shared.delivery import Delivery
from shared.failure import DependencyDown, PermanentError
from shared.http import PermanentHTTPError, TransientHTTPError

import contract_examples as examples
from fakes import FakeOmnitron

NAME = "omnitron-publisher"


def delivery(
    sequence: int,
    status: str,
    previous: str | None,
    shipment: str,
    items: tuple[int, ...],
    routing_key: str | None = None,
) -> Delivery:
    data = examples.status_changed(
        sequence,
        status,
        previous,
        shipment_id=shipment,
        order_item_ids=items,
        package_id=f"PKG-{shipment}",
        order_number=f"ORD-{shipment}",
    )
    body = examples.to_bytes(examples.envelope("ShipmentStatusChanged", data))
    return Delivery(
        body=body,
        content_type="application/cloudevents+json",
        routing_key=routing_key or f"shipment.status_changed.{status}",
        message_id=None,
    )


def recorded(db, *deliveries: Delivery) -> list[Delivery]:
    for d in deliveries:
        event = parse_event(d.body)
        db.record_change(event.data, event.id)
    return list(deliveries)


class RefusingOmnitron(FakeOmnitron):
    """Refuses (400) any call carrying one of ``refused`` items; ``down``: every call fails (503)."""

    def __init__(self, refused=(), down=False):
        super().__init__()
        self.refused, self.down, self.tried = set(refused), down, []

    def send(self, call) -> Sent:
        self.tried.append(call)
        if self.down:
            raise TransientHTTPError("HTTP 503", status=503)
        if self.refused & set(call.order_item_ids):
            raise PermanentHTTPError("order closed", 400)
        return super().send(call)


def relay(db, omnitron, deliveries):
    # As the worker hands them over: decoded once, on arrival, by the service's pipeline.
    pipeline = Pipeline(
        NAME, {"ShipmentStatusChanged": partial(relay_to_omnitron, omnitron=omnitron)}, partial(db.uow, NAME)
    )
    batch = BatchRelay(engine=db.engine, consumer=NAME, pipeline=pipeline, omnitron=omnitron)
    return batch(None, [pipeline.decode(d) for d in deliveries])


def test_shipped_changes_of_several_packages_go_to_omnitron_in_one_bulk_call(db):
    omnitron = FakeOmnitron()
    batch = recorded(
        db,
        delivery(3, "shipped", "registered", "s1", (1, 2)),
        delivery(3, "shipped", "registered", "s2", (3,)),
        delivery(3, "shipped", "registered", "s3", (4,)),
    )

    outcomes = relay(db, omnitron, batch)

    assert [o.error for o in outcomes] == [None, None, None]
    [call] = omnitron.calls
    assert call.path == BULK_STATUS_PATH
    assert [e["id"] for e in call.body["orderitem_set"]] == [1, 2, 3, 4]
    assert {e["status"] for e in call.body["orderitem_set"]} == {"500"}
    assert [db.omnitron_cursor(s) for s in ("s1", "s2", "s3")] == [3, 3, 3]
    assert db.inbox_count(NAME) == 3
    # Each change keeps its own call for a later resend: its own items only.
    assert sorted(r[2] for r in db.relays()) == ["sent"] * 3


def test_a_4xx_to_a_call_of_several_packages_is_tried_again_one_call_each_and_only_the_bad_one_fails(db):
    omnitron = RefusingOmnitron(refused={3})
    batch = recorded(
        db,
        delivery(3, "shipped", "registered", "s1", (1,)),
        delivery(3, "shipped", "registered", "s2", (3,)),
        delivery(3, "shipped", "registered", "s3", (4,)),
    )

    outcomes = relay(db, omnitron, batch)

    assert outcomes[0].error is None and outcomes[2].error is None
    assert isinstance(outcomes[1].error, PermanentError) and "HTTP 400" in str(outcomes[1].error)
    assert [c.order_item_ids for c in omnitron.tried] == [(1, 3, 4), (1,), (3,), (4,)]
    assert [c.order_item_ids for c in omnitron.calls] == [(1,), (4,)]
    # The refused change left no trace: judged as new if it is replayed.
    assert db.inbox_count(NAME) == 2
    assert db.omnitron_cursor("s2") == 0


def test_a_shipments_changes_in_one_batch_reach_omnitron_in_sequence_order(db):
    omnitron = FakeOmnitron()
    batch = recorded(
        db,
        delivery(5, "delivered", "shipped", "s1", (1,)),
        delivery(3, "shipped", "registered", "s1", (1,)),
        delivery(3, "shipped", "registered", "s2", (2,)),
        delivery(2, "registered", "pending", "s2", (2,)),
    )

    outcomes = relay(db, omnitron, batch)

    assert [o.error for o in outcomes] == [None] * 4
    sent = [(c.path, [(e["id"], e["status"]) for e in c.body.get("orderitem_set", [])]) for c in omnitron.calls]
    # Wave 1: s1's shipped (s2's registered is an extra_field call of its own); wave 2: both.
    assert sent[0] == (BULK_STATUS_PATH, [(1, "500")])
    assert sent[1][0] == "/api/v1/order_items/2/"
    assert sent[2] == (BULK_STATUS_PATH, [(1, "550"), (2, "500")])
    assert db.omnitron_cursor("s1") == 5 and db.omnitron_cursor("s2") == 3


def test_omnitron_down_fails_the_group_and_holds_back_the_later_changes_of_its_shipments(db):
    omnitron = RefusingOmnitron(down=True)
    batch = recorded(
        db,
        delivery(3, "shipped", "registered", "s1", (1,)),
        delivery(3, "shipped", "registered", "s2", (2,)),
        delivery(5, "delivered", "shipped", "s1", (1,)),
    )

    outcomes = relay(db, omnitron, batch)

    assert isinstance(outcomes[0].error, DependencyDown) and isinstance(outcomes[1].error, DependencyDown)
    assert isinstance(outcomes[2].error, HeldBack)
    assert len(omnitron.tried) == 1  # the later change was never sent
    assert db.inbox_count(NAME) == 0


def test_a_change_older_than_the_last_relayed_one_is_not_sent_in_a_batch_either(db):
    omnitron = FakeOmnitron()
    first = recorded(
        db, delivery(5, "delivered", "shipped", "s1", (1,)), delivery(5, "delivered", "shipped", "s2", (2,))
    )
    relay(db, omnitron, first)
    late = recorded(
        db, delivery(3, "shipped", "registered", "s1", (1,)), delivery(3, "shipped", "registered", "s2", (2,))
    )

    outcomes = relay(db, omnitron, late)

    assert [o.error for o in outcomes] == [None, None]
    assert len(omnitron.calls) == 1
    assert sorted(r[2] for r in db.relays()) == ["sent", "sent", "skipped_stale", "skipped_stale"]


def test_a_duplicate_and_a_bad_message_in_a_batch_are_each_settled_on_their_own(db):
    omnitron = FakeOmnitron()
    batch = recorded(
        db, delivery(3, "shipped", "registered", "s1", (1,)), delivery(3, "shipped", "registered", "s2", (2,))
    )
    forged = delivery(3, "shipped", "registered", "s9", (9,))  # never recorded
    wrong_key = delivery(3, "shipped", "registered", "s3", (3,), routing_key="shipment.status_changed.pending")
    bad = Delivery(body=b"{", content_type="application/cloudevents+json", routing_key="x", message_id=None)

    outcomes = relay(db, omnitron, batch + [batch[0], forged, wrong_key, bad])

    assert [o.error for o in outcomes[:3]] == [None, None, None]
    assert all(isinstance(o.error, PermanentError) for o in outcomes[3:])
    [call] = omnitron.calls
    assert call.order_item_ids == (1, 2)
    assert db.inbox_count(NAME) == 2
