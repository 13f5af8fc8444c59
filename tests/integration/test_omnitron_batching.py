"""The Omnitron publisher's batches against RabbitMQ, PostgreSQL and the Omnitron stand-in:
one ``bulk_status_update`` call carries several packages' items, a 4xx to it is tried again
one call per package so that only the refused package is dead-lettered, and each
shipment's changes still reach Omnitron in sequence order.

The packer and the shipper run first, until every package is handed over; only then is
the publisher started, so its queue holds every package's pending, registered and
shipped changes and it takes them in one batch.
"""

from __future__ import annotations

import psycopg

from services.omnitron_publisher.omnitron import BULK_STATUS_PATH
from shared import naming

from events import package_packed, package_shipped, to_bytes
from harness import wait_until

PACKAGES = 12
ITEM_BASE = 40_000
IN_ORDER = [("extra", "pending"), ("extra", "registered"), ("bulk", "500")]


def handed_over(pipeline) -> None:
    for n in range(PACKAGES):
        package_id = f"PKG-B{n:03d}"
        for event in (package_packed(package_id, f"ORD-B{n:03d}", [ITEM_BASE + n]), package_shipped(package_id)):
            key = "package.packed" if event["type"] == "PackagePacked" else "package.shipped"
            pipeline.publisher.publish(key, to_bytes(event), message_id=event["id"], event_type=event["type"])
    pipeline.start("packer")
    pipeline.start("shipper")

    def shipped() -> bool:
        with psycopg.connect(pipeline.database_url, autocommit=True) as db:
            return db.execute("SELECT count(*) FROM shipments WHERE status = 'shipped'").fetchone()[0] == PACKAGES

    wait_until(shipped, 60, message="every package to be handed over")
    queue = naming.work_queue("omnitron-publisher")
    wait_until(
        lambda: pipeline.publisher.queue_depth(queue) == 3 * PACKAGES,
        30,
        message="every change to wait for the publisher",
    )


def bulk_calls(pipeline) -> list[list[int]]:
    return [
        [entry["id"] for entry in call["body"]["orderitem_set"]]
        for call in pipeline.omnitron.calls
        if call["path"] == BULK_STATUS_PATH
    ]


def test_the_shipped_changes_of_many_packages_go_to_omnitron_in_one_bulk_call_each_item_in_order(pipeline_factory):
    pipeline = pipeline_factory(extra_env={"OMS_OMNITRON_BULK_PACKAGES": "100"})
    handed_over(pipeline)
    pipeline.start("omnitron-publisher")

    items = [ITEM_BASE + n for n in range(PACKAGES)]
    wait_until(
        lambda: all(pipeline.omnitron.calls_for_item(i) == IN_ORDER for i in items),
        60,
        message="every item's three calls, in order",
    )
    calls = bulk_calls(pipeline)
    assert sorted(sum(calls, [])) == items  # each item once
    assert max(map(len, calls)) > 1, calls  # the changes arrive together: several packages per call


def test_a_refused_item_in_a_bulk_call_is_dead_lettered_alone_and_the_other_packages_go_through(pipeline_factory):
    pipeline = pipeline_factory(extra_env={"OMS_OMNITRON_BULK_PACKAGES": "100"})
    refused = ITEM_BASE + 3
    pipeline.omnitron.reject_item_ids.add(refused)
    handed_over(pipeline)
    pipeline.start("omnitron-publisher")

    others = [ITEM_BASE + n for n in range(PACKAGES) if ITEM_BASE + n != refused]
    wait_until(
        lambda: all(pipeline.omnitron.calls_for_item(i) == IN_ORDER for i in others),
        60,
        message="the other items' calls, in order",
    )
    dead_letters = naming.dead_letter_queue("omnitron-publisher")
    # Its pending, registered and shipped changes: each refused by Omnitron, each dead-lettered.
    wait_until(
        lambda: pipeline.publisher.queue_depth(dead_letters) == 3, 30, message="the refused changes' dead letters"
    )
    assert pipeline.omnitron.calls_for_item(refused) == []
    # The call carrying the refused item was tried again one call per package.
    calls = bulk_calls(pipeline)
    assert sorted(sum(calls, [])) == others
    assert min(map(len, calls)) == 1
