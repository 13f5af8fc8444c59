"""OMS_QUEUE_TYPE=quorum: quorum work and dead-letter queues, the pipeline unchanged."""

from __future__ import annotations

import harness
from events import package_packed, package_shipped, to_bytes
from harness import wait_until


def _queue_types(amqp_url: str) -> dict[str, str]:
    vhost = amqp_url.rsplit("/", 1)[1]
    out = harness.rabbitmqctl("list_queues", "-p", vhost, "--quiet", "--no-table-headers", "name", "type")
    return dict(line.split("\t")[:2] for line in out.splitlines() if "\t" in line)


def test_quorum_mode_declares_quorum_work_queues_and_the_pipeline_completes(pipeline_factory):
    pipeline = pipeline_factory(extra_env={"OMS_QUEUE_TYPE": "quorum"})
    types = _queue_types(pipeline.amqp_url)
    for service in ("packer", "shipper", "omnitron-publisher"):
        assert types[f"oms-shipments.{service}"] == "quorum"
        # Dead letters are read again and again by operators: classic keeps their order.
        assert types[f"oms-shipments.{service}.dlq"] == "classic"
    # Delay queues need message TTL, which quorum queues honour only from RabbitMQ 3.12.
    assert {t for name, t in types.items() if ".delay." in name} == {"classic"}

    pipeline.carrier.fate = lambda order_number: ["SHIPPING", "DELIVERED"]
    # Four 500s outlast the client's three tries: the message takes a delay queue and comes back.
    pipeline.carrier.fail_next(4)
    pipeline.start_all_services()
    for n in range(5):
        packed = package_packed(f"PKG-Q{n}", f"ORD-Q{n}", [90_000 + n])
        shipped = package_shipped(f"PKG-Q{n}")
        pipeline.publisher.publish(
            "package.packed", to_bytes(packed), message_id=packed["id"], event_type="PackagePacked"
        )
        pipeline.publisher.publish(
            "package.shipped", to_bytes(shipped), message_id=shipped["id"], event_type="PackageShipped"
        )
    expected = [("extra", "pending"), ("extra", "registered"), ("bulk", "500"), ("bulk", "550")]
    wait_until(
        lambda: all(pipeline.omnitron.calls_for_item(90_000 + n) == expected for n in range(5)),
        90,
        message="every package delivered through quorum queues",
    )
    assert "handler failed, will retry" in pipeline.logs()
