"""Tracing turned on the way an operator does it, by the standard variables, in a real
``oms-shipments run`` process: its spans come out, the start-up line still comes first, and
the event it publishes carries the trace on to the next service."""

from __future__ import annotations

import json

import pika

from events import package_packed
from harness import first_line_metrics_port, wait_until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_otel_variables_turn_on_spans_in_a_running_packer_and_its_event_carries_the_trace(pipeline_factory):
    pipeline = pipeline_factory(
        extra_env={
            "OTEL_TRACES_EXPORTER": "console",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_SERVICE_NAME": "packer-under-test",
        }
    )
    (packer,) = pipeline.start("packer")
    event = package_packed("PKG-TRACED-1", "ORD-TRACED-1", [43_001])
    event["traceparent"] = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    pipeline.publisher.publish("package.packed", json.dumps(event).encode())

    queue = "oms-shipments.shipper"
    wait_until(lambda: pipeline.publisher.queue_depth(queue) == 1, 60, message="the pending change for the shipper")
    assert packer.terminate() == 0
    log = packer.log_text()

    assert first_line_metrics_port(log) > 0  # "starting" is still the first line
    assert '"name": "process package.packed"' in log and '"name": "publish shipment.status_changed.pending"' in log
    assert f'"trace_id": "0x{TRACE_ID}"' in log and '"service.name": "packer-under-test"' in log
    assert '"event": "tracing on"' in log

    connection = pika.BlockingConnection(pika.URLParameters(pipeline.amqp_url))
    try:
        method, properties, body = connection.channel().basic_get(queue, auto_ack=True)
    finally:
        connection.close()
    stored = json.loads(body)
    assert stored["traceparent"].startswith(f"00-{TRACE_ID}-")
    assert properties.headers["traceparent"] == stored["traceparent"]
