"""parse_event: the contract's bytes become typed events, anything else is rejected with a reason."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import (
    MAX_BODY_BYTES,
    CloudEvent,
    EventRejected,
    PackagePacked,
    PackageShipped,
    ShipmentStatus,
    ShipmentStatusChanged,
    parse_event,
)

import contract_examples as examples


def test_the_contracts_package_packed_example_is_accepted_with_every_field():
    event = parse_event(examples.to_bytes(examples.example("PackagePacked")), "application/cloudevents+json")

    assert event.id == "7d0c6a1e-5a51-4a39-9d6c-1f1b2d2f4c10"
    assert event.source == "/oms/instore/store-42"
    assert event.subject == "PKG-1001"
    assert event.time == datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
    packed = event.data
    assert isinstance(packed, PackagePacked)
    assert (packed.package_id, packed.order_number, packed.carrier, packed.delivery_type) == (
        "PKG-1001",
        "ORD-1001",
        "sandbox",
        "CUSTOMER",
    )
    [item] = packed.items
    assert (item.order_item_id, item.sku, item.barcode, item.name, item.quantity, item.deci) == (
        555,
        "SKU-1",
        "8690000000011",
        "Shirt",
        2,
        1.5,
    )
    assert packed.destination.address_line == "Istiklal Cd. 1"
    assert packed.destination.township == ""
    assert packed.delivery_note == "Ring twice"
    assert packed.payment.amount == Decimal("120.50")
    assert packed.payment.currency == "TRY"
    assert packed.stock_location.id == "42"


def test_the_contracts_package_shipped_example_is_accepted():
    event = parse_event(examples.to_bytes(examples.example("PackageShipped")))

    assert event.type == "PackageShipped"
    assert event.data == PackageShipped(
        package_id="PKG-1001", shipped_at=datetime(2026, 11, 27, 12, 30, tzinfo=timezone.utc)
    )


def test_the_contracts_shipment_status_changed_example_is_accepted():
    event = parse_event(examples.to_bytes(examples.example("ShipmentStatusChanged")))

    change = event.data
    assert isinstance(change, ShipmentStatusChanged)
    assert change.previous_status is ShipmentStatus.REGISTERED
    assert change.status is ShipmentStatus.SHIPPED
    assert (change.sequence, change.carrier_status, change.order_item_ids) == (3, "SHIPPING", [555])


def test_a_package_packed_without_its_optional_fields_is_accepted():
    data = copy.deepcopy(examples.PACKAGE_PACKED)
    for optional in ("delivery_note", "payment", "stock_location"):
        del data[optional]
    for optional in ("barcode", "name", "deci"):
        del data["items"][0][optional]

    packed = parse_event(examples.to_bytes(examples.envelope("PackagePacked", data))).data

    assert packed.payment is None and packed.delivery_note is None and packed.stock_location is None
    assert packed.items[0].barcode is None and packed.items[0].deci is None


def test_unknown_envelope_attributes_and_unknown_data_fields_are_ignored():
    body = examples.example("PackagePacked")
    body["comexampleextension1"] = "value"  # (traceparent is known: tests/unit/test_trace_context.py)
    body["partitionkey"] = "ORD-1001"
    body["data"]["gift_wrap"] = True
    body["data"]["items"][0]["colour"] = "red"
    body["data"]["destination"]["building"] = {"floor": 3}

    event = parse_event(examples.to_bytes(body))

    assert event.data == parse_event(examples.to_bytes(examples.example("PackagePacked"))).data
    assert not hasattr(event, "comexampleextension1")


def test_plain_application_json_and_a_charset_parameter_are_accepted_content_types():
    body = examples.to_bytes(examples.example("PackageShipped"))

    for content_type in ("application/json", "application/cloudevents+json; charset=utf-8", "Application/JSON", None):
        assert parse_event(body, content_type).type == "PackageShipped"


def _without(body: dict, *path: str) -> dict:
    body = copy.deepcopy(body)
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return body


_with = examples.with_value


PACKED = examples.example("PackagePacked")
TOO_DEEP = b"[" * 100_000 + b"]" * 100_000

REJECTED = [
    pytest.param(b"this is not json", "body is not JSON", id="not JSON"),
    pytest.param(examples.to_bytes(PACKED)[:-20], "body is not JSON", id="truncated JSON"),
    pytest.param(b"", "body is not JSON", id="empty body"),
    pytest.param(b"\xff\xfe\x00garbage", "body is not JSON", id="undecodable bytes"),
    pytest.param(TOO_DEEP, "body is not JSON", id="nesting deeper than the decoder goes"),
    pytest.param(b'{"id": ' + b"9" * 5000 + b"}", "body is not JSON", id="an integer too long to convert"),
    pytest.param(b"[1, 2, 3]", "body is not a JSON object", id="a JSON array"),
    pytest.param(b'"PackagePacked"', "body is not a JSON object", id="a JSON string"),
    pytest.param(b"null", "body is not a JSON object", id="JSON null"),
    pytest.param(examples.to_bytes(_without(PACKED, "id")), "id: Field required", id="envelope without id"),
    pytest.param(examples.to_bytes(_without(PACKED, "data")), "data: Field required", id="envelope without data"),
    pytest.param(examples.to_bytes(_without(PACKED, "source")), "source: Field required", id="envelope without source"),
    pytest.param(examples.to_bytes(_with(PACKED, "0.3", "specversion")), "specversion", id="another specversion"),
    pytest.param(examples.to_bytes(_with(PACKED, 42, "id")), "id: Input should be a valid string", id="a numeric id"),
    pytest.param(examples.to_bytes(_with(PACKED, "yesterday", "time")), "time:", id="a time that is not a date"),
    pytest.param(
        examples.to_bytes(_with(PACKED, "PackageLost", "type")),
        "unknown event type 'PackageLost'",
        id="an unknown type",
    ),
    pytest.param(
        examples.to_bytes(_with(PACKED, ["PKG-1001"], "data")),
        "PackagePacked: data is not a JSON object",
        id="data that is not an object",
    ),
    pytest.param(
        examples.to_bytes(_without(PACKED, "data", "order_number")),
        "invalid PackagePacked data: order_number: Field required",
        id="data without order_number",
    ),
    pytest.param(
        examples.to_bytes(_without(PACKED, "data", "items", 0, "order_item_id")),
        "items.0.order_item_id: Field required",
        id="an item without its order item id",
    ),
    pytest.param(examples.to_bytes(_with(PACKED, [], "data", "items")), "items:", id="no items"),
    pytest.param(
        examples.to_bytes(_with(PACKED, "two", "data", "items", 0, "quantity")),
        "items.0.quantity: Input should be a valid integer",
        id="a quantity that is a word",
    ),
    pytest.param(
        examples.to_bytes(_with(PACKED, 0, "data", "items", 0, "quantity")),
        "items.0.quantity: Input should be greater than or equal to 1",
        id="a quantity of zero",
    ),
    pytest.param(
        examples.to_bytes(_with(PACKED, "DRONE", "data", "delivery_type")),
        "delivery_type:",
        id="an unknown delivery type",
    ),
    pytest.param(
        examples.to_bytes(_with(PACKED, "soon", "data", "packed_at")), "packed_at:", id="packed_at that is not a date"
    ),
    pytest.param(
        examples.to_bytes(_with(PACKED, "2026-11-27T10:00:00", "data", "packed_at")),
        "packed_at: Input should have timezone info",
        id="packed_at without its UTC offset",
    ),
    pytest.param(
        examples.to_bytes(examples.envelope("PackageShipped", examples.shipped(shipped_at="2026-11-27T12:30"))),
        "shipped_at: Input should have timezone info",
        id="shipped_at without its UTC offset",
    ),
    pytest.param(
        examples.to_bytes(examples.envelope("PackageShipped", {"package_id": "PKG-1001"})),
        "invalid PackageShipped data: shipped_at: Field required",
        id="a hand-over without its time",
    ),
    pytest.param(
        examples.to_bytes(
            examples.envelope("ShipmentStatusChanged", _with(examples.SHIPMENT_STATUS_CHANGED, "lost", "status"))
        ),
        "status:",
        id="an unknown shipment status",
    ),
]


@pytest.mark.parametrize("body, reason", REJECTED)
def test_a_message_the_contract_rejects_raises_event_rejected_with_a_readable_reason(body, reason):
    with pytest.raises(EventRejected) as rejected:
        parse_event(body, "application/cloudevents+json")

    assert reason in rejected.value.reason
    assert str(rejected.value) == rejected.value.reason


def test_a_body_over_one_mebibyte_is_rejected_before_it_is_parsed():
    body = examples.envelope("PackageShipped", padding="")
    size = len(examples.to_bytes(body))
    body["padding"] = "x" * (MAX_BODY_BYTES - size + 1)
    too_big = examples.to_bytes(body)
    assert len(too_big) == MAX_BODY_BYTES + 1

    with pytest.raises(EventRejected, match=f"{MAX_BODY_BYTES + 1} bytes exceeds the {MAX_BODY_BYTES}-byte limit"):
        parse_event(too_big)


def test_a_body_of_exactly_one_mebibyte_is_accepted():
    body = examples.envelope("PackageShipped", padding="")
    body["padding"] = "x" * (MAX_BODY_BYTES - len(examples.to_bytes(body)))
    exactly = examples.to_bytes(body)
    assert len(exactly) == MAX_BODY_BYTES

    assert parse_event(exactly).type == "PackageShipped"


@pytest.mark.parametrize("content_type", ["application/xml", "text/plain", "application/octet-stream"])
def test_a_content_type_other_than_json_is_rejected(content_type):
    with pytest.raises(EventRejected, match=f"unsupported content type '{content_type}'"):
        parse_event(examples.to_bytes(examples.example("PackageShipped")), content_type)


def test_an_event_written_by_the_services_parses_back_to_the_same_event():
    change = parse_event(examples.to_bytes(examples.example("ShipmentStatusChanged"))).data
    written = CloudEvent.new("ShipmentStatusChanged", "/oms-shipments/tracker", change, subject="PKG-1001")

    assert json.loads(written.to_bytes())["datacontenttype"] == "application/json"
    assert parse_event(written.to_bytes(), "application/cloudevents+json") == written


# ---- property: parse_event returns an event or raises EventRejected, nothing else ------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)

_FIELD_PATHS = [
    (event_type, path)
    for event_type, data in examples.EXAMPLE_DATA.items()
    for path in [(key,) for key in examples.EXAMPLE_ENVELOPE]
    + [("data", key) for key in data]
    + ([("data", "items", 0, key) for key in data["items"][0]] if event_type == "PackagePacked" else [])
    + ([("data", "destination", key) for key in data["destination"]] if event_type == "PackagePacked" else [])
]


@st.composite
def mutated_examples(draw) -> bytes:
    """A contract example with one field replaced by any JSON value, or removed."""
    event_type, path = draw(st.sampled_from(_FIELD_PATHS))
    body = examples.envelope(event_type)
    if draw(st.booleans()):
        body = _without(body, *path)
    else:
        body = _with(body, draw(JSON_VALUES), *path)
    return json.dumps(body).encode()


def _parse_or_reject(body: bytes, content_type: str | None) -> None:
    try:
        event = parse_event(body, content_type)
    except EventRejected as rejected:
        assert rejected.reason
    else:
        assert isinstance(event, CloudEvent)
        assert type(event.data).__name__ == event.type


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.one_of(
        st.binary(max_size=200),
        st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=8).map(lambda d: json.dumps(d).encode()),
        JSON_VALUES.map(lambda v: json.dumps(v).encode()),
        mutated_examples(),
    ),
    content_type=st.sampled_from([None, "application/json", "application/cloudevents+json", "text/plain"]),
)
def test_any_bytes_either_parse_to_an_event_or_are_rejected_never_anything_else(body, content_type):
    _parse_or_reject(body, content_type)
