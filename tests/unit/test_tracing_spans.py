"""Tracing on, with the SDK's in-memory exporter: one package's trace runs from the upstream's
PackagePacked through the packer, the relay, the carrier registration and the Omnitron call.

The whole pipeline runs in this process, as ``oms-shipments demo`` runs it: the embedded broker,
SQLite, and the sandbox carrier and Omnitron stand-in as real HTTP servers.
"""

from __future__ import annotations

import time
import uuid

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id

from services.carriers.directory import CarrierDirectory
from services.carriers.shipment_flows import CarrierConfig
from services.migrations import upgrade
from services.runtime.bootstrap import SERVICE_NAMES, RunningServices, bootstrap, topology
from services.runtime.settings import ServiceSettings as Settings
from services.standins.omnitron import OmnitronStandIn
from services.standins.sandbox_carrier import SandboxCarrier
from shared import tracing
from shared.broker import Publisher, connect

import contract_examples as examples

UPSTREAM_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
UPSTREAM_SPAN = "00f067aa0ba902b7"
ITEM = 777


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    yield exporter
    tracing.use(None)
    provider.shutdown()


@pytest.fixture
def pipeline(tmp_path):
    password, token = uuid.uuid4().hex, uuid.uuid4().hex
    amqp_url = f"memory://tracing-{uuid.uuid4().hex[:8]}"
    database_url = f"sqlite:///{tmp_path / 'traced.sqlite3'}"
    with SandboxCarrier(username="user", password=password) as carrier, OmnitronStandIn(token=token) as omnitron:
        settings = Settings(
            amqp_url=amqp_url,
            database_url=database_url,
            omnitron_url=omnitron.url,
            omnitron_token=token,
            tracker_idle_s=0.1,
            retry_delays_s=[0.5, 1, 2],
            carriers_file=tmp_path / "unused.toml",
            metrics_port=None,
            log_level="WARNING",
        )
        carriers = CarrierDirectory(
            {
                "sandbox": CarrierConfig(
                    code="sandbox",
                    url=carrier.url,
                    username="user",
                    password=password,
                    poll_interval_s=0.2,
                    max_requests_per_s=500,
                )
            }
        )
        upgrade(database_url)
        with connect(amqp_url) as connection:
            topology(settings).declare(connection)
        runtime = bootstrap(settings, carriers=carriers)
        running = RunningServices(runtime, list(SERVICE_NAMES)).start()
        try:
            yield amqp_url, carrier, omnitron
        finally:
            running.stop(timeout_s=30)


def _publish(amqp_url: str, body: bytes, routing_key: str) -> None:
    with connect(amqp_url) as connection:
        Publisher(connection).publish(body, routing_key=routing_key)


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_one_packages_trace_links_package_packed_to_registration_to_the_omnitron_call(spans, pipeline):
    amqp_url, carrier, omnitron = pipeline
    carrier.fate = lambda order_number: ["SHIPPING"]
    packed = examples.example("PackagePacked")
    packed["data"]["items"][0]["order_item_id"] = ITEM
    packed["traceparent"] = f"00-{UPSTREAM_TRACE}-{UPSTREAM_SPAN}-01"
    packed["tracestate"] = "upstream=erp"
    _publish(amqp_url, examples.to_bytes(packed), "package.packed")

    _wait(lambda: ("extra", "registered") in omnitron.calls_for_item(ITEM), 60, "the registered change in Omnitron")
    # A span ends after its effect is seen (the relay's publish span after the consumer may
    # already have handled the event): wait for the ones asserted on.
    wanted = {"PATCH": 2, "publish shipment.status_changed.pending": 1, "publish shipment.status_changed.registered": 1}

    def all_ended() -> bool:
        names = [s.name for s in spans.get_finished_spans()]
        return all(sum(n.startswith(prefix) for n in names) >= count for prefix, count in wanted.items())

    _wait(all_ended, 10, "the spans of the calls and publishes")
    finished = spans.get_finished_spans()
    by_id = {span.context.span_id: span for span in finished}

    def chain(span) -> list[str]:
        names = []
        while span is not None:
            names.append(span.name)
            span = by_id.get(span.parent.span_id) if span.parent else None
        return names

    trace = [span for span in finished if format_trace_id(span.context.trace_id) == UPSTREAM_TRACE]
    packer = next(s for s in trace if s.name == "process package.packed")
    assert packer.kind is SpanKind.CONSUMER and format_span_id(packer.parent.span_id) == UPSTREAM_SPAN
    assert packer.attributes["cloudevents.event_id"] == packed["id"]
    assert packer.attributes["oms.package_id"] == "PKG-1001"

    registration = next(s for s in trace if s.name == "POST /shipments")
    assert registration.kind is SpanKind.CLIENT
    assert chain(registration) == [
        "POST /shipments",
        "handle ShipmentStatusChanged",
        "process shipment.status_changed.pending",
        "create ShipmentStatusChanged",
        "handle PackagePacked",
        "process package.packed",
    ]
    assert registration.attributes["http.response.status_code"] in (200, 201)
    shipment_id = registration.attributes["oms.shipment_id"]
    assert registration.attributes["oms.package_id"] == "PKG-1001"

    def ancestors(span) -> set[int]:
        found = set()
        while span is not None and span.parent is not None:
            found.add(span.parent.span_id)
            span = by_id.get(span.parent.span_id)
        return found

    # The registered change's Omnitron call descends from the handling that registered it.
    shipper_handling = registration.parent.span_id
    omnitron_calls = [s for s in trace if s.name.startswith("PATCH") and s.attributes["oms.shipment_id"] == shipment_id]
    assert any(shipper_handling in ancestors(call) for call in omnitron_calls)
    assert {call.attributes["url.template"] for call in omnitron_calls} <= {
        "/api/v1/order_items/{id}/",
        "/api/i1/order_items/bulk_status_update/",
    }
    assert chain(omnitron_calls[0])[1:3] == ["handle ShipmentStatusChanged", "process shipment.status_changed.pending"]

    # Every event on the way was published by a relay, inside the same trace.
    published = [s for s in trace if s.name.startswith("publish shipment.status_changed.")]
    assert {s.name for s in published} >= {
        "publish shipment.status_changed.pending",
        "publish shipment.status_changed.registered",
    }
    assert all(by_id[s.parent.span_id].name == "create ShipmentStatusChanged" for s in published)
    assert all(s.attributes["oms.shipment_id"] == shipment_id for s in published)

    # The requests carried the trace: each one the span of its call.
    registered = [r for r in carrier.requests if r.method == "POST"]
    assert registered and registered[0].headers["traceparent"] == (
        f"00-{UPSTREAM_TRACE}-{format_span_id(registration.context.span_id)}-01"
    )
    assert registered[0].headers["tracestate"] == "upstream=erp"
    assert any(r.headers.get("traceparent", "").startswith(f"00-{UPSTREAM_TRACE}-") for r in omnitron.requests)


def test_a_malformed_traceparent_starts_a_new_trace_and_the_package_goes_through(spans, pipeline):
    amqp_url, carrier, omnitron = pipeline
    packed = examples.example("PackagePacked")
    packed["data"]["items"][0]["order_item_id"] = ITEM + 1
    packed["traceparent"] = "00-" + "z" * 32 + "-" + "1" * 16 + "-01"
    _publish(amqp_url, examples.to_bytes(packed), "package.packed")

    _wait(lambda: ("extra", "registered") in omnitron.calls_for_item(ITEM + 1), 60, "the registered change")
    packer = next(s for s in spans.get_finished_spans() if s.name == "process package.packed")
    assert packer.parent is None
