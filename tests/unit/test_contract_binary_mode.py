"""CloudEvents binary content mode (CONTRACT.md §2): attributes in ``ce-`` headers, the data
alone as the body; the official SDK's messages in both modes; the same rules for both."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from cloudevents.core.bindings import rabbitmq
from cloudevents.core.v1.event import CloudEvent as SdkEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import EventRejected, PackagePacked, parse_event, peek_data

import contract_examples as examples

ATTRIBUTES = {
    "id": examples.EXAMPLE_ENVELOPE["id"],
    "source": "/oms/instore/store-42",
    "time": "2026-11-27T10:00:00Z",
    "subject": "PKG-1001",
}


def binary_headers(event_type: str, **changes) -> dict:
    headers = {"ce-specversion": "1.0", "ce-type": event_type, **{f"ce-{k}": v for k, v in ATTRIBUTES.items()}}
    headers.update(changes)
    return {name: value for name, value in headers.items() if value is not None}


def data_bytes(event_type: str, data: dict | None = None) -> bytes:
    return json.dumps(examples.EXAMPLE_DATA[event_type] if data is None else data).encode()


def reason_of(body: bytes, content_type: str | None, headers: dict) -> str:
    with pytest.raises(EventRejected) as rejected:
        parse_event(body, content_type, headers)
    return rejected.value.reason


@pytest.mark.parametrize("event_type", list(examples.EXAMPLE_DATA))
def test_a_binary_mode_message_parses_to_the_same_event_as_its_structured_twin(event_type):
    structured = parse_event(examples.to_bytes(examples.example(event_type)), "application/cloudevents+json")

    binary = parse_event(data_bytes(event_type), "application/json", binary_headers(event_type))

    assert binary == structured


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_binary_mode_data_may_be_plain_json_or_have_no_content_type(content_type):
    event = parse_event(data_bytes("PackageShipped"), content_type, binary_headers("PackageShipped"))

    assert event.type == "PackageShipped"
    assert event.datacontenttype == content_type


def _sdk_event(event_type: str, data: dict, **attributes) -> SdkEvent:
    return SdkEvent(
        attributes={
            "type": event_type,
            "source": "/oms/erp",
            "subject": data["package_id"],
            "time": datetime(2026, 11, 27, 10, tzinfo=timezone.utc),
            "datacontenttype": "application/json",
            **attributes,
        },
        data=data,
    )


@pytest.mark.parametrize(
    "convert", [rabbitmq.to_binary_event, rabbitmq.to_structured_event], ids=["binary", "structured"]
)
@pytest.mark.parametrize("event_type", ["PackagePacked", "PackageShipped"])
def test_events_written_by_the_official_sdk_in_either_mode_are_accepted(convert, event_type):
    sdk_event = _sdk_event(event_type, copy.deepcopy(examples.EXAMPLE_DATA[event_type]))
    message = convert(sdk_event)

    event = parse_event(message.body, message.content_type, message.headers)

    assert (event.id, event.source, event.type, event.subject) == (
        sdk_event.get_id(),
        "/oms/erp",
        event_type,
        examples.EXAMPLE_DATA[event_type]["package_id"],
    )
    assert event.time == datetime(2026, 11, 27, 10, tzinfo=timezone.utc)
    assert type(event.data).__name__ == event_type
    if event_type == "PackagePacked":
        assert event.data.payment.amount == Decimal("120.50")


def test_an_sdk_event_without_a_data_content_type_is_read_as_json_data():
    sdk_event = SdkEvent(
        attributes={"type": "PackageShipped", "source": "/oms/erp"}, data=copy.deepcopy(examples.PACKAGE_SHIPPED)
    )
    message = rabbitmq.to_binary_event(sdk_event)
    assert message.content_type is None

    assert parse_event(message.body, message.content_type, message.headers).data.package_id == "PKG-1001"


def test_the_sdk_reads_back_an_event_the_services_write():
    written = examples.parsed("ShipmentStatusChanged")
    message = rabbitmq.RabbitMQMessage(headers={}, content_type="application/cloudevents+json", body=written.to_bytes())

    read = rabbitmq.from_rabbitmq_event(message)

    assert read.get_id() == written.id and read.get_type() == "ShipmentStatusChanged"
    assert read.get_data()["sequence"] == 3


def test_ce_headers_of_a_structured_message_are_ignored():
    headers = binary_headers("PackageShipped", **{"ce-id": "another-id", "ce-type": "PackagePacked"})

    event = parse_event(examples.to_bytes(examples.example("PackageShipped")), "application/cloudevents+json", headers)

    assert (event.id, event.type) == (examples.EXAMPLE_ENVELOPE["id"], "PackageShipped")


def test_without_a_ce_specversion_header_a_message_is_structured_whatever_its_other_headers():
    headers = binary_headers("PackageShipped", **{"ce-specversion": None})

    event = parse_event(examples.to_bytes(examples.example("PackageShipped")), "application/json", headers)

    assert event.id == examples.EXAMPLE_ENVELOPE["id"]


def test_header_names_are_read_without_case_as_the_sdk_reads_them():
    headers = {name.upper(): value for name, value in binary_headers("PackageShipped").items()}

    assert parse_event(data_bytes("PackageShipped"), "application/json", headers).id == ATTRIBUTES["id"]


def test_an_attribute_named_twice_in_different_case_is_refused():
    headers = {**binary_headers("PackageShipped"), "CE-ID": "another"}

    assert (
        reason_of(data_bytes("PackageShipped"), "application/json", headers)
        == "binary-mode headers name the attribute 'id' twice"
    )


def test_data_and_content_type_never_come_from_headers():
    headers = binary_headers(
        "PackageShipped", **{"ce-data": '{"package_id": "FORGED"}', "ce-datacontenttype": "text/plain"}
    )

    event = parse_event(data_bytes("PackageShipped"), "application/json", headers)

    assert event.data.package_id == "PKG-1001" and event.datacontenttype == "application/json"


NOT_STRINGS = [
    b"1.0",
    1,
    1.0,
    True,
    None,
    Decimal("1.0"),
    datetime(2026, 11, 27, tzinfo=timezone.utc),
    {"value": "1.0"},
    ["1.0"],
    bytearray(b"1.0"),
]


# (trace context that is not a string is ignored instead: tests/unit/test_trace_context.py)
@pytest.mark.parametrize("attribute", ["specversion", "id", "source", "type", "time", "subject", "partitionkey"])
@pytest.mark.parametrize("value", NOT_STRINGS, ids=lambda v: type(v).__name__)
def test_a_ce_header_that_is_not_an_amqp_string_is_refused_naming_the_header(attribute, value):
    headers = {**binary_headers("PackageShipped"), f"ce-{attribute}": value}

    assert (
        reason_of(data_bytes("PackageShipped"), "application/json", headers)
        == f"header ce-{attribute} is an AMQP {type(value).__name__}, not a string"
    )


@pytest.mark.parametrize("missing", ["id", "source", "type"])
def test_a_binary_message_without_a_required_attribute_is_refused_naming_it(missing):
    headers = binary_headers("PackageShipped", **{f"ce-{missing}": None})

    assert f"invalid CloudEvents envelope: {missing}: Field required" in reason_of(
        data_bytes("PackageShipped"), "application/json", headers
    )


@pytest.mark.parametrize(
    "header, value, says",
    [
        ("ce-specversion", "0.3", "specversion: String should match pattern"),
        ("ce-type", "PackageLost", "unknown event type 'PackageLost'"),
        ("ce-time", "1764237600", "time: Value error, a time is an RFC 3339 date and time"),
        ("ce-id", "x" * 256, "id: String should have at most 255 characters"),
        ("ce-source", "/oms\x00/store", "source: text holds U+0000"),
        ("ce-subject", "\ud800", "subject: text holds a lone surrogate"),
    ],
)
def test_binary_attributes_obey_the_envelope_rules(header, value, says):
    headers = binary_headers("PackageShipped", **{header: value})

    assert says in reason_of(data_bytes("PackageShipped"), "application/json", headers)


@pytest.mark.parametrize(
    "data, says",
    [
        (
            {**examples.PACKAGE_PACKED, "items": [{**examples.PACKAGE_PACKED["items"][0], "quantity": True}]},
            "invalid PackagePacked data: items.0.quantity: Input should be a valid integer",
        ),
        ({**examples.PACKAGE_PACKED, "package_id": "x" * 256}, "package_id: String should have at most 255 characters"),
        ({**examples.PACKAGE_PACKED, "items": examples.PACKAGE_PACKED["items"] * 2}, "appears more than once"),
        (
            {key: v for key, v in examples.PACKAGE_PACKED.items() if key != "order_number"},
            "order_number: Field required",
        ),
    ],
)
def test_binary_data_obeys_the_same_value_rules(data, says):
    assert says in reason_of(data_bytes("PackagePacked", data), "application/json", binary_headers("PackagePacked"))


@pytest.mark.parametrize(
    "body, says",
    [
        (b"[1, 2]", "PackageShipped: data is not a JSON object"),
        (b"not json", "body is not JSON"),
        (b"[" * 100_000, "nested more than 64 levels deep"),
        (b'{"package_id": NaN}', "NaN is not a JSON number"),
        (b" " * (1024 * 1024 + 1), "exceeds the 1048576-byte limit"),
    ],
)
def test_a_binary_body_that_is_not_a_json_object_is_refused(body, says):
    assert says in reason_of(body, "application/json", binary_headers("PackageShipped"))


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "application/octet-stream", "application/json-seq"]
)
def test_binary_data_of_another_content_type_is_refused_naming_it(content_type):
    assert (
        reason_of(data_bytes("PackageShipped"), content_type, binary_headers("PackageShipped"))
        == f"binary-mode data content type {content_type!r} is not JSON (application/json)"
    )


@pytest.mark.parametrize("headers", [{}, binary_headers("PackageShipped")], ids=["structured", "with ce- headers"])
@pytest.mark.parametrize(
    "content_type", ["application/cloudevents-batch+json", "application/cloudevents-batch+json; charset=utf-8"]
)
def test_batched_content_mode_is_refused(headers, content_type):
    body = json.dumps([examples.example("PackageShipped")]).encode()

    assert (
        reason_of(body, content_type, headers)
        == f"batched content mode ({content_type!r}) is not accepted: one event per message"
    )


def test_a_structured_content_type_other_than_json_is_refused_even_with_ce_headers():
    assert (
        reason_of(
            examples.to_bytes(examples.example("PackageShipped")),
            "application/cloudevents+xml",
            binary_headers("PackageShipped"),
        )
        == "unsupported content type 'application/cloudevents+xml'"
    )


@pytest.mark.parametrize(
    "name, shown",
    [("ce-data_schema\u001b[31m", "'ce-data_schema\\x1b[31m'"), ("ce-" + "x" * 100, repr("ce-" + "x" * 61))],
)
def test_an_odd_header_name_is_quoted_and_cut_in_the_reason(name, shown):
    headers = {**binary_headers("PackageShipped"), name: 42}

    assert (
        reason_of(data_bytes("PackageShipped"), "application/json", headers)
        == f"header {shown} is an AMQP int, not a string"
    )


def test_header_names_that_are_not_text_are_ignored():
    headers = {**binary_headers("PackageShipped"), b"ce-\xff": "x", 7: "y"}

    assert parse_event(data_bytes("PackageShipped"), "application/json", headers).type == "PackageShipped"


def test_peek_data_reads_the_data_in_either_mode_without_checking_it():
    assert (
        peek_data(data_bytes("ShipmentStatusChanged"), "application/json", binary_headers("ShipmentStatusChanged"))[
            "shipment_id"
        ]
        == "b0f2..."
    )
    assert peek_data(examples.to_bytes(examples.example("ShipmentStatusChanged")))["shipment_id"] == "b0f2..."
    with pytest.raises(EventRejected):
        peek_data(b"[" * 200_000)


_AMQP_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.text(max_size=30),
    st.binary(max_size=30),
    st.decimals(allow_nan=False),
    st.datetimes(timezones=st.just(timezone.utc)),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
)
_ATTRIBUTE_NAMES = st.sampled_from(
    ["specversion", "id", "source", "type", "time", "subject", "datacontenttype", "data", "dataschema", "traceparent"]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    changes=st.dictionaries(_ATTRIBUTE_NAMES.map(lambda n: f"ce-{n}") | st.text(max_size=12), _AMQP_VALUES, max_size=6),
    content_type=st.sampled_from([None, "application/json", "text/plain", "application/cloudevents+json", ""]),
    event_type=st.sampled_from(["PackagePacked", "PackageShipped", "ShipmentStatusChanged"]),
)
def test_any_headers_of_any_amqp_type_give_an_event_or_a_reason_never_another_error(changes, content_type, event_type):
    headers = {**binary_headers(event_type), **changes}

    try:
        event = parse_event(data_bytes(event_type), content_type, headers)
    except EventRejected as rejected:
        assert rejected.reason
    else:
        assert type(event.data).__name__ == event.type
        if isinstance(event.data, PackagePacked):
            assert event.data.package_id == "PKG-1001"
