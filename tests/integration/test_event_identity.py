"""Which events are the same, which are new, and which the services refuse to believe:
raw pika publishes into running services, real RabbitMQ, PostgreSQL and HTTP stand-ins.

CONTRACT.md §2: ``source`` + ``id`` identify an event; a second PackagePacked for a packed
package is a repeat when its data is equal and is dead-lettered when it is not; a
ShipmentStatusChanged naming a change the services never recorded is dead-lettered; an
order item held by two packages follows, in Omnitron, the package packed last.
"""

from __future__ import annotations

import json
import time

import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families
from psycopg.rows import dict_row

from shared import naming

from events import envelope, package_packed, package_shipped, shipment_status_changed, to_bytes
from harness import wait_until
from recorded import record_change

PACKER_DLQ = naming.dead_letter_queue("packer")
SHIPPER_DLQ = naming.dead_letter_queue("shipper")
PUBLISHER_DLQ = naming.dead_letter_queue("omnitron-publisher")


def query(pipeline, sql: str, *params) -> list[dict]:
    with psycopg.connect(pipeline.database_url, row_factory=dict_row) as connection:
        return connection.execute(sql, params).fetchall()


def shipment(pipeline, package_id: str) -> dict | None:
    rows = query(pipeline, "SELECT * FROM shipments WHERE package_id = %s", package_id)
    return rows[0] if rows else None


def publish(pipeline, routing_key: str, event: dict) -> None:
    pipeline.publisher.publish(routing_key, to_bytes(event), message_id=event["id"])


def dead_letters(pipeline, queue: str, count: int) -> list[tuple]:
    """Waits for ``count`` dead letters on ``queue`` and takes them: (properties, event) each."""
    wait_until(lambda: pipeline.publisher.queue_depth(queue) >= count, 60, message=f"{count} dead letter(s) on {queue}")
    return [(properties, json.loads(body)) for properties, body in pipeline.publisher.get_all(queue)]


def conflicts_counted(process) -> float:
    port = wait_until(process.metrics_port, 30, message="the metrics port named by the first log line")
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "oms_conflicting_events_total" and sample.labels == {"event_type": "PackagePacked"}
    )


def test_the_same_event_id_from_two_sources_is_applied_as_two_events(pipeline):
    pipeline.start("packer")
    first = package_packed("PKG-SRC-1", "ORD-SRC-1", [81_001])
    other = {**package_packed("PKG-SRC-2", "ORD-SRC-2", [81_002]), "id": first["id"], "source": "/oms/erp"}

    publish(pipeline, "package.packed", first)
    publish(pipeline, "package.packed", other)

    wait_until(
        lambda: shipment(pipeline, "PKG-SRC-1") and shipment(pipeline, "PKG-SRC-2"),
        30,
        message="a shipment for each package",
    )
    inbox = query(pipeline, "SELECT source, event_id FROM inbox WHERE consumer = 'packer' ORDER BY source")
    assert inbox == [
        {"source": "/oms/erp", "event_id": first["id"]},
        {"source": "/oms/instore/store-42", "event_id": first["id"]},
    ]
    assert pipeline.publisher.queue_depth(PACKER_DLQ) == 0


def test_the_same_source_and_id_delivered_twice_is_applied_once(pipeline):
    pipeline.start("packer")
    packed = package_packed("PKG-TWICE", "ORD-TWICE", [81_003])
    publish(pipeline, "package.packed", packed)
    publish(pipeline, "package.packed", packed)
    marker = package_packed("PKG-AFTER-TWICE", "ORD-AFTER-TWICE", [81_004])
    publish(pipeline, "package.packed", marker)

    wait_until(lambda: shipment(pipeline, "PKG-AFTER-TWICE"), 30, message="the package published after both copies")
    wait_until(lambda: pipeline.publisher.queue_depth(naming.work_queue("packer")) == 0, 30, message="an empty queue")
    assert query(pipeline, "SELECT count(*) AS n FROM shipment_status_changes")[0]["n"] == 2
    assert query(pipeline, "SELECT count(*) AS n FROM inbox WHERE event_id = %s", packed["id"])[0]["n"] == 1
    assert pipeline.publisher.queue_depth(PACKER_DLQ) == 0


def test_a_repack_with_other_content_is_dead_lettered_with_the_reason_and_counted_an_equal_one_is_a_repeat(pipeline):
    [packer] = pipeline.start("packer")
    first = package_packed("PKG-REPACK", "ORD-REPACK", [81_005])
    publish(pipeline, "package.packed", first)
    wait_until(lambda: shipment(pipeline, "PKG-REPACK"), 30, message="the first packing")
    counted_before = conflicts_counted(packer)

    # The same data under a new id and another source, written differently: a repeat.
    equal = {
        **first,
        "id": "repeat-1",
        "source": "/oms/erp",
        "data": {**first["data"], "packed_at": "2026-11-27T13:00:00+03:00", "unknown_field": 1},
    }
    other = {
        **first,
        "id": "conflict-1",
        "data": {**first["data"], "items": [{**first["data"]["items"][0], "quantity": 9}]},
    }
    publish(pipeline, "package.packed", equal)
    publish(pipeline, "package.packed", other)

    [(properties, dead)] = dead_letters(pipeline, PACKER_DLQ, 1)
    assert dead["id"] == "conflict-1"
    assert properties.headers[naming.HEADER_ERROR_CLASS] == "PermanentError"
    assert "already packed with other content" in properties.headers[naming.HEADER_ERROR_MESSAGE]
    assert properties.headers[naming.HEADER_ATTEMPTS] == 1
    assert conflicts_counted(packer) == counted_before + 1
    assert query(pipeline, "SELECT quantity FROM package_items WHERE package_id = 'PKG-REPACK'") == [
        {"quantity": first["data"]["items"][0]["quantity"]}
    ]
    inbox = {row["event_id"] for row in query(pipeline, "SELECT event_id FROM inbox WHERE consumer = 'packer'")}
    assert inbox == {first["id"], "repeat-1"}  # the refused one is not recorded as applied
    assert query(pipeline, "SELECT count(*) AS n FROM shipments")[0]["n"] == 1


def forged_change(shipment_id: str, sequence: int, status: str, item_ids: list[int]) -> dict:
    return envelope(
        "ShipmentStatusChanged",
        {
            "shipment_id": shipment_id,
            "package_id": "PKG-FORGE",
            "order_number": "ORD-FORGE",
            "carrier": "sandbox",
            "tracking_number": "FORGED",
            "tracking_url": "https://evil.example/FORGED",
            "previous_status": "shipped",
            "status": status,
            "carrier_status": "DELIVERED",
            "sequence": sequence,
            "changed_at": "2026-11-27T12:30:00Z",
            "order_item_ids": item_ids,
        },
        source="/oms-shipments/tracker",
    )


def test_forged_status_changes_are_dead_lettered_and_omnitron_never_hears_of_them(pipeline):
    pipeline.carrier.fate = lambda order_number: ["CREATED"]  # registered, never handed over
    pipeline.start_all_services()
    publish(pipeline, "package.packed", package_packed("PKG-FORGE", "ORD-FORGE", [81_006]))
    wait_until(
        lambda: pipeline.omnitron.calls_for_item(81_006) == [("extra", "pending"), ("extra", "registered")],
        60,
        message="the genuine pending and registered changes in Omnitron",
    )
    real = shipment(pipeline, "PKG-FORGE")

    wrong_sequence = forged_change(real["id"], 7, "delivered", [81_006])
    unknown_shipment = forged_change("no-such-shipment", 3, "delivered", [81_006])
    pending_for_nobody = {**forged_change("no-such-shipment", 1, "pending", [81_006]), "id": "forged-pending"}
    pipeline.publisher.publish("shipment.status_changed.delivered", to_bytes(wrong_sequence))
    pipeline.publisher.publish("shipment.status_changed.delivered", to_bytes(unknown_shipment))
    pipeline.publisher.publish("shipment.status_changed.pending", to_bytes(pending_for_nobody))

    publisher_letters = {
        dead["id"]: properties.headers[naming.HEADER_ERROR_MESSAGE]
        for properties, dead in dead_letters(pipeline, PUBLISHER_DLQ, 3)
    }
    assert "has no recorded change with sequence 7" in publisher_letters[wrong_sequence["id"]]
    assert "'no-such-shipment' was never recorded" in publisher_letters[unknown_shipment["id"]]
    assert "'no-such-shipment' was never recorded" in publisher_letters["forged-pending"]
    [(properties, dead)] = dead_letters(pipeline, SHIPPER_DLQ, 1)
    assert dead["id"] == "forged-pending"
    assert "'no-such-shipment' was never recorded" in properties.headers[naming.HEADER_ERROR_MESSAGE]

    assert pipeline.omnitron.calls_for_item(81_006) == [("extra", "pending"), ("extra", "registered")]
    assert not any("FORGED" in json.dumps(call["body"]) for call in pipeline.omnitron.calls)
    assert not [r for r in pipeline.carrier.requests if r.method == "POST" and r.shipment_id == "no-such-shipment"]
    assert (shipment(pipeline, "PKG-FORGE")["status"], shipment(pipeline, "PKG-FORGE")["sequence"]) == ("registered", 2)


def calls_for_item_with_tracking(omnitron, order_item_id: int) -> list[tuple[str, str, str | None]]:
    """(kind, status, tracking number) of every Omnitron call naming the item, in order."""
    seen = []
    for call in list(omnitron.calls):
        if "orderitem_set" in call["body"]:
            seen += [
                ("bulk", e["status"], e.get("tracking_number"))
                for e in call["body"]["orderitem_set"]
                if e["id"] == order_item_id
            ]
        elif call["path"].rstrip("/").endswith(f"/{order_item_id}"):
            change = call["body"]["extra_field"]["shipment"]
            seen.append(("extra", change["status"], change.get("tracking_number")))
    return seen


def test_an_order_item_in_two_packages_follows_in_omnitron_the_package_packed_last(pipeline):
    # The old package lingers in transit; the re-pack of its item 555 is delivered quickly.
    fates = {"ORD-OLD": ["SHIPPING"] * 20 + ["ATTEMPTED_DELIVERY", "DELIVERED"], "ORD-NEW": ["SHIPPING", "DELIVERED"]}
    pipeline.carrier.fate = lambda order_number: list(fates[order_number])
    pipeline.start_all_services()
    old = package_packed("PKG-OLD", "ORD-OLD", [81_555, 81_556])
    publish(pipeline, "package.packed", old)
    publish(pipeline, "package.shipped", package_shipped("PKG-OLD"))
    wait_until(
        lambda: ("bulk", "500") in pipeline.omnitron.calls_for_item(81_555),
        60,
        message="the old package shipped in Omnitron",
    )

    new = package_packed("PKG-NEW", "ORD-NEW", [81_555])  # Akinon re-packs after "product not found"
    new["data"]["packed_at"] = "2026-11-27T11:00:00Z"
    publish(pipeline, "package.packed", new)
    publish(pipeline, "package.shipped", package_shipped("PKG-NEW"))

    wait_until(
        lambda: (
            (shipment(pipeline, "PKG-OLD") or {}).get("status") == "delivered"
            and (shipment(pipeline, "PKG-NEW") or {}).get("status") == "delivered"
        ),
        120,
        message="both packages delivered",
    )
    wait_until(
        lambda: pipeline.omnitron.calls_for_item(81_556)[-1:] == [("bulk", "550")],
        60,
        message="the old package's own item delivered in Omnitron",
    )
    old_tracking = shipment(pipeline, "PKG-OLD")["tracking_number"]
    new_tracking = shipment(pipeline, "PKG-NEW")["tracking_number"]
    wait_until(
        lambda: calls_for_item_with_tracking(pipeline.omnitron, 81_555)[-1:] == [("bulk", "550", new_tracking)],
        60,
        message="item 555 delivered by the new package",
    )

    # The old package's changes up to the re-pack, then the new package's only: its later
    # attempted delivery and delivery are recorded for item 555, not sent.
    assert calls_for_item_with_tracking(pipeline.omnitron, 81_555) == [
        ("extra", "pending", None),
        ("extra", "registered", old_tracking),
        ("bulk", "500", old_tracking),
        ("extra", "pending", None),
        ("extra", "registered", new_tracking),
        ("bulk", "500", new_tracking),
        ("bulk", "550", new_tracking),
    ]
    assert pipeline.omnitron.calls_for_item(81_556)[-2:] == [("bulk", "540"), ("bulk", "550")]
    superseded = query(
        pipeline,
        "SELECT r.status, r.superseded_items FROM omnitron_relays r JOIN shipments s "
        "ON s.id = r.shipment_id WHERE s.package_id = 'PKG-OLD' AND r.superseded_items IS NOT NULL "
        "ORDER BY r.sequence",
    )
    assert [(row["status"], json.loads(row["superseded_items"])) for row in superseded] == [
        ("attempted_delivery", [81_555]),
        ("delivered", [81_555]),
    ]


def test_two_packages_sharing_an_item_reach_omnitron_one_after_the_other_the_later_package_last(pipeline_factory):
    pipeline = pipeline_factory(extra_env={"OMS_OMNITRON_TIMEOUT_S": "20"})
    publishers = pipeline.start("omnitron-publisher", 2)  # two processes: only the database orders the two changes
    wait_until(lambda: all('"consuming"' in p.log_text() for p in publishers), 60, message="both publishers consuming")
    pipeline.omnitron.stall_next(1, 3.0)  # the old package's call is processed 3 s after it arrives
    old = shipment_status_changed("shp-old", 3, "shipped", "registered", [82_001])
    record_change(pipeline.database_url, old, packed_at="2026-11-27T10:00:00Z")
    pipeline.publisher.publish("shipment.status_changed.shipped", to_bytes(old))
    time.sleep(1.0)  # the old package's call is now held at Omnitron (its handler takes it in milliseconds)

    new = shipment_status_changed("shp-new", 3, "shipped", "registered", [82_001])  # the re-pack, packed later
    record_change(pipeline.database_url, new, packed_at="2026-11-27T11:00:00Z")
    pipeline.publisher.publish("shipment.status_changed.shipped", to_bytes(new))

    wait_until(
        lambda: query(pipeline, "SELECT count(*) AS n FROM omnitron_relays")[0]["n"] == 2,
        60,
        message="both changes relayed",
    )
    time.sleep(4.0)  # longer than the stall: a late call would have landed by now
    calls = calls_for_item_with_tracking(pipeline.omnitron, 82_001)
    # The new package's change goes last: after the old one's call was answered, or alone
    # (if the old change came second, it was recorded for the item, not sent).
    assert calls[-1] == ("bulk", "500", "SBXnew"), calls
    assert calls in ([("bulk", "500", "SBXold"), ("bulk", "500", "SBXnew")], [("bulk", "500", "SBXnew")]), calls
