"""Metric labels come from a bounded set: a sender cannot grow the series a process keeps."""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY

from services.runtime.bootstrap import KNOWN_EVENT_TYPES
from shared.delivery import Delivery
from shared.failure import Decision, Verdict
from shared.metrics import count_disposed, observe_http

QUEUE = f"unit-labels-{uuid.uuid4().hex[:6]}"


def _delivery(event_type: str | None) -> Delivery:
    return Delivery(
        body=b"{}", content_type="application/json", routing_key="package.packed", message_id="m", event_type=event_type
    )


def _event_type_labels() -> set[str]:
    return {
        sample.labels["event_type"]
        for metric in REGISTRY.collect()
        if metric.name == "oms_messages"
        for sample in metric.samples
        if sample.labels.get("queue") == QUEUE
    }


def test_a_message_of_an_unknown_type_is_counted_as_other_however_many_types_arrive():
    hook = count_disposed(QUEUE, KNOWN_EVENT_TYPES)
    failed = Decision(Verdict.DEAD_LETTER, reason="no", error_class="PermanentError")
    for n in range(50):
        hook(_delivery(f"Hostile{n}-{uuid.uuid4()}"), failed, 0.001)
    hook(_delivery(None), failed, 0.001)
    hook(_delivery("PackagePacked"), Decision(Verdict.ACK), 0.001)

    assert _event_type_labels() == {"other", "PackagePacked"}


def test_the_known_types_are_the_contract_s_events():
    assert {"PackagePacked", "PackageShipped", "ShipmentStatusChanged"} <= KNOWN_EVENT_TYPES


def test_an_http_status_outside_the_real_range_is_labelled_other():
    target = f"unit-target-{uuid.uuid4().hex[:6]}"
    for status in (200, 503, 0, 99, 600, 123456, None):
        observe_http(target, "GET", status, 0.01)

    statuses = {
        sample.labels["status"]
        for metric in REGISTRY.collect()
        if metric.name == "oms_http_client_seconds"
        for sample in metric.samples
        if sample.labels.get("target") == target
    }
    assert statuses == {"200", "503", "other", "error"}
