"""Values are checked as strictly as they are typed (CONTRACT.md §2): each rule refuses with a
reason naming the field, and the values the contract allows still pass."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import EventRejected, Item, PackagePacked, ShipmentStatus, ShipmentStatusChanged, parse_event

import contract_examples as examples

MAX_ID = 2**63 - 1


def _event(event_type: str, path: tuple, value) -> bytes:
    """The contract's example of ``event_type`` with one value replaced (a path from the envelope)."""
    return json.dumps(examples.with_value(examples.example(event_type), value, *path)).encode()


def _reason(body: bytes) -> str:
    with pytest.raises(EventRejected) as rejected:
        parse_event(body, "application/cloudevents+json")
    return rejected.value.reason


# Every integer field of the contract, as (event type, path, the field's name in the reason).
INTEGER_FIELDS = [
    ("PackagePacked", ("data", "items", 0, "order_item_id"), "items.0.order_item_id"),
    ("PackagePacked", ("data", "items", 0, "quantity"), "items.0.quantity"),
    ("ShipmentStatusChanged", ("data", "sequence"), "sequence"),
    ("ShipmentStatusChanged", ("data", "order_item_ids", 0), "order_item_ids.0"),
]
NOT_AN_INTEGER = [True, False, 2.0, 1e3, "2", "555", None, [2], {"value": 2}]
OUT_OF_RANGE = [0, -1, -(2**63), MAX_ID + 1, 10**30]


@pytest.mark.parametrize("event_type, path, field", INTEGER_FIELDS)
@pytest.mark.parametrize("value", NOT_AN_INTEGER, ids=repr)
def test_an_integer_field_refuses_anything_but_a_json_integer_naming_the_field(event_type, path, field, value):
    reason = _reason(_event(event_type, path, value))

    assert f"{field}: Input should be a valid integer" in reason


@pytest.mark.parametrize("event_type, path, field", INTEGER_FIELDS)
@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_an_integer_field_refuses_values_outside_one_to_two_to_the_sixty_three_minus_one(
    event_type, path, field, value
):
    reason = _reason(_event(event_type, path, value))

    assert f"{field}: Input should be" in reason
    assert ("greater than or equal to 1" in reason) or (f"less than or equal to {MAX_ID}" in reason)


@pytest.mark.parametrize("event_type, path, field", INTEGER_FIELDS)
@pytest.mark.parametrize("value", [1, 2, MAX_ID])
def test_an_integer_field_takes_every_integer_from_one_to_the_maximum(event_type, path, field, value):
    event = parse_event(_event(event_type, path, value))

    target = event.data
    for key in path[1:]:
        target = target[key] if isinstance(key, int) else getattr(target, key)
    assert target == value and type(target) is int


def test_an_order_item_id_that_appears_twice_in_a_package_is_refused_naming_it():
    data = examples.packed(item_ids=(555, 556, 555))

    reason = _reason(examples.to_bytes(examples.envelope("PackagePacked", data)))

    assert "invalid PackagePacked data: items: " in reason
    assert "order item id 555 appears more than once" in reason


def test_several_items_with_distinct_order_item_ids_are_accepted():
    data = examples.packed(item_ids=(555, 556, 557))

    packed = parse_event(examples.to_bytes(examples.envelope("PackagePacked", data))).data

    assert [item.order_item_id for item in packed.items] == [555, 556, 557]


# ---- numbers ------------------------------------------------------------------------------------

DECI = ("data", "items", 0, "deci")


@pytest.mark.parametrize(
    "value, says",
    [
        (-0.5, "greater than or equal to 0"),
        (-1, "greater than or equal to 0"),
        (True, "valid number"),
        ("1.5", "valid number"),
        ([1.5], "valid number"),
    ],
)
def test_deci_refuses_negative_and_non_numeric_values_naming_the_field(value, says):
    reason = _reason(_event("PackagePacked", DECI, value))

    assert "items.0.deci: Input should be" in reason and says in reason


def test_a_number_too_large_for_a_float_is_refused_as_not_finite():
    body = _event("PackagePacked", DECI, 0).replace(b'"deci": 0', b'"deci": 1e400')

    assert "items.0.deci: Input should be a finite number" in _reason(body)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_literals_are_not_json_and_are_refused(literal):
    body = _event("PackagePacked", DECI, 0).replace(b'"deci": 0', b'"deci": ' + literal)

    assert _reason(body) == f"body is not JSON: ValueError: {literal.decode()} is not a JSON number"


@pytest.mark.parametrize("value", [0, 0.0, 1, 1.5, 1e6])
def test_deci_takes_finite_numbers_from_zero_up(value):
    assert parse_event(_event("PackagePacked", DECI, value)).data.items[0].deci == value


AMOUNT = ("data", "payment", "amount")


@pytest.mark.parametrize(
    "value, expected",
    [
        ("120.50", Decimal("120.50")),
        ("0", Decimal("0")),
        ("120", Decimal("120")),
        ("0.0001", Decimal("0.0001")),
        (120.5, Decimal("120.5")),
        (120, Decimal("120")),
        (0, Decimal("0")),
        ("9999999999999999.9999", None),
    ],
)
def test_a_payment_amount_is_a_decimal_string_or_a_number(value, expected):
    amount = parse_event(_event("PackagePacked", AMOUNT, value)).data.payment.amount

    assert amount == (Decimal(value) if expected is None else expected)


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        None,
        [],
        "",
        "NaN",
        "Infinity",
        "-1",
        "+1",
        " 120.50",
        "120.50 ",
        "120.50\n",
        "1_000",
        "1e3",
        "12,50",
        "0x10",
        "120.12345",
        "1" * 17,
        "١٢٣",
        -1,
        -0.01,
        1e300,
        120.12345,
    ],
    ids=repr,
)
def test_a_payment_amount_refuses_anything_else_naming_the_field(value):
    assert "payment.amount: " in _reason(_event("PackagePacked", AMOUNT, value))


def test_an_amount_too_large_for_a_float_is_refused():
    body = _event("PackagePacked", AMOUNT, 0).replace(b'"amount": 0', b'"amount": 1e400')

    assert "payment.amount: " in _reason(body)


# ---- strings --------------------------------------------------------------------------------------

# Every string the contract types, as (event type, path, field name, the longest it may be).
STRING_FIELDS = [
    *[("PackagePacked", ("data", key), key, 255) for key in ("package_id", "order_number", "carrier")],
    ("PackagePacked", ("data", "delivery_note"), "delivery_note", 2000),
    *[("PackagePacked", ("data", "items", 0, key), f"items.0.{key}", 255) for key in ("sku", "barcode", "name")],
    *[
        ("PackagePacked", ("data", "destination", key), f"destination.{key}", 255)
        for key in ("name", "surname", "phone", "city", "district", "township", "zipcode")
    ],
    ("PackagePacked", ("data", "destination", "address_line"), "destination.address_line", 2000),
    ("PackagePacked", ("data", "stock_location", "id"), "stock_location.id", 255),
    ("PackagePacked", ("data", "stock_location", "name"), "stock_location.name", 255),
    ("PackageShipped", ("data", "package_id"), "package_id", 255),
    *[
        ("ShipmentStatusChanged", ("data", key), key, 255)
        for key in ("shipment_id", "package_id", "order_number", "carrier", "tracking_number", "carrier_status")
    ],
    ("ShipmentStatusChanged", ("data", "tracking_url"), "tracking_url", 2000),
]
ENVELOPE_STRINGS = [("id", 255), ("source", 255), ("type", None), ("subject", 255), ("datacontenttype", 255)]


def _string_ids(params):
    return [f"{event_type}.{field}" for event_type, _, field, _ in params]


@pytest.mark.parametrize("event_type, path, field, longest", STRING_FIELDS, ids=_string_ids(STRING_FIELDS))
def test_a_string_one_character_over_its_limit_is_refused_naming_the_field(event_type, path, field, longest):
    reason = _reason(_event(event_type, path, "x" * (longest + 1)))

    assert f"{field}: String should have at most {longest} characters" in reason


@pytest.mark.parametrize("event_type, path, field, longest", STRING_FIELDS, ids=_string_ids(STRING_FIELDS))
def test_a_string_of_exactly_its_limit_is_accepted(event_type, path, field, longest):
    assert parse_event(_event(event_type, path, "x" * longest)).type == event_type


@pytest.mark.parametrize("event_type, path, field, longest", STRING_FIELDS, ids=_string_ids(STRING_FIELDS))
def test_a_string_holding_u0000_is_refused_naming_the_field(event_type, path, field, longest):
    assert f"{field}: text holds U+0000" in _reason(_event(event_type, path, "PKG\u00001001"))


@pytest.mark.parametrize("event_type, path, field, longest", STRING_FIELDS, ids=_string_ids(STRING_FIELDS))
@pytest.mark.parametrize("surrogate", ["\ud800", "\udfff", "a\udc00b", "\ude00\ud83d"])
def test_a_string_holding_a_lone_surrogate_is_refused_naming_the_field(event_type, path, field, longest, surrogate):
    # json.dumps writes the surrogate as a \u escape, as a foreign encoder would.
    assert f"{field}: text holds a lone surrogate" in _reason(_event(event_type, path, surrogate))


@pytest.mark.parametrize("event_type, path, field, longest", STRING_FIELDS, ids=_string_ids(STRING_FIELDS))
@pytest.mark.parametrize("value", [1001, 1.5, True, ["PKG-1"], {"id": "PKG-1"}], ids=repr)
def test_a_string_field_refuses_other_json_types_naming_the_field(event_type, path, field, longest, value):
    assert f"{field}: Input should be a valid string" in _reason(_event(event_type, path, value))


@pytest.mark.parametrize("text", ["Beyoğlu", "İstiklal Cd. 1 · 🏬", "😀" * 255, "\t\n"])
def test_unicode_text_and_surrogate_pairs_are_accepted(text):
    # json.dumps escapes 😀 as the pair \ud83d\ude00: a pair is one character, never refused.
    packed = parse_event(_event("PackagePacked", ("data", "destination", "district"), text)).data

    assert packed.destination.district == text


def test_a_string_is_measured_in_characters_not_bytes():
    two_byte_characters = "ğ" * 255

    assert (
        parse_event(_event("PackagePacked", ("data", "package_id"), two_byte_characters)).data.package_id
        == two_byte_characters
    )


@pytest.mark.parametrize("attribute, longest", ENVELOPE_STRINGS)
def test_envelope_string_attributes_are_bounded_and_clean(attribute, longest):
    nul = _reason(_event("PackageShipped", (attribute,), "a\u0000b"))
    assert f"invalid CloudEvents envelope: {attribute}: text holds U+0000" in nul
    surrogate = _reason(_event("PackageShipped", (attribute,), "a\udca0"))
    assert f"{attribute}: text holds a lone surrogate" in surrogate
    if longest is not None:
        too_long = _reason(_event("PackageShipped", (attribute,), "x" * (longest + 1)))
        assert f"{attribute}: String should have at most {longest} characters" in too_long


@pytest.mark.parametrize("attribute", ["id", "source", "type"])
def test_an_empty_identifying_attribute_is_refused(attribute):
    assert f"{attribute}: String should have at least 1 character" in _reason(
        _event("PackageShipped", (attribute,), "")
    )


def test_an_over_long_string_in_an_unknown_field_is_ignored_like_the_field():
    body = examples.with_value(examples.example("PackageShipped"), "x\u0000" * 100_000, "data", "note")

    assert parse_event(json.dumps(body).encode()).type == "PackageShipped"


# ---- times -----------------------------------------------------------------------------------------

TIME_FIELDS = [
    ("PackagePacked", ("data", "packed_at"), "packed_at"),
    ("PackageShipped", ("data", "shipped_at"), "shipped_at"),
    ("ShipmentStatusChanged", ("data", "changed_at"), "changed_at"),
    ("PackageShipped", ("time",), "time"),
]


@pytest.mark.parametrize("event_type, path, field", TIME_FIELDS)
@pytest.mark.parametrize(
    "value",
    [
        1764237600,
        1764237600.5,
        "1764237600",
        True,
        "",
        "27.11.2026 10:00",
        "2026-11-27",
        "x" * 70,
        ["2026-11-27T10:00:00Z"],
    ],
    ids=repr,
)
def test_a_time_is_rfc_3339_text_never_a_timestamp_number_naming_the_field(event_type, path, field, value):
    reason = _reason(_event(event_type, path, value))

    assert f"{field}: Value error, a time is an RFC 3339 date and time" in reason


@pytest.mark.parametrize("event_type, path, field", TIME_FIELDS)
@pytest.mark.parametrize("value", ["0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00"])
def test_a_time_outside_the_utc_calendar_is_refused_naming_the_field(event_type, path, field, value):
    assert f"{field}: Value error, the time is outside the years 1 to 9999 in UTC" in _reason(
        _event(event_type, path, value)
    )


@pytest.mark.parametrize("event_type, path, field", TIME_FIELDS)
@pytest.mark.parametrize(
    "value, expected",
    [
        ("2026-11-27T10:00:00Z", datetime(2026, 11, 27, 10, tzinfo=timezone.utc)),
        ("2026-11-27T13:00:00+03:00", datetime(2026, 11, 27, 10, tzinfo=timezone.utc)),
        ("2026-11-27 10:00:00.123456z", datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=timezone.utc)),
        ("0001-01-01T01:00:00+01:00", datetime(1, 1, 1, tzinfo=timezone.utc)),
    ],
)
def test_rfc_3339_times_with_an_offset_are_accepted_everywhere(event_type, path, field, value, expected):
    event = parse_event(_event(event_type, path, value))

    found = event.time if path == ("time",) else getattr(event.data, field)
    assert found == expected


def test_times_without_an_offset_stay_accepted_where_they_were():
    # The envelope's time and a status change's changed_at took local times before: they still do.
    assert parse_event(_event("PackageShipped", ("time",), "2026-11-27T10:00:00")).time == datetime(2026, 11, 27, 10)
    change = parse_event(_event("ShipmentStatusChanged", ("data", "changed_at"), "2026-11-27T12:30:01")).data
    assert change.changed_at == datetime(2026, 11, 27, 12, 30, 1)


# ---- the services' own models obey the same rules ---------------------------------------------


def test_models_the_services_build_from_python_values_are_checked_alike():
    with pytest.raises(ValueError, match="quantity"):
        Item(order_item_id=1, sku="SKU-1", quantity=True)
    with pytest.raises(ValueError, match="deci"):
        Item(order_item_id=1, sku="SKU-1", quantity=1, deci=float("nan"))
    change = ShipmentStatusChanged(
        shipment_id="s",
        package_id="p",
        order_number="o",
        carrier="c",
        status=ShipmentStatus.PENDING,
        sequence=1,
        changed_at=datetime(2026, 11, 27, tzinfo=timezone.utc),
        order_item_ids=[1, 2],
    )
    assert change.changed_at.tzinfo is timezone.utc
    with pytest.raises(ValueError, match="tracking_number"):
        change.model_validate({**change.model_dump(), "tracking_number": "x" * 256})


def test_every_contract_example_still_parses_to_the_same_values():
    for event_type in examples.EXAMPLE_DATA:
        event = parse_event(examples.to_bytes(examples.example(event_type)))
        assert event.model_dump(mode="json", exclude_none=True)["data"] == {
            key: value for key, value in examples.EXAMPLE_DATA[event_type].items()
        } | ({"payment": {"amount": "120.50", "currency": "TRY"}} if event_type == "PackagePacked" else {})


# ---- property: valid values pass, one bad value is named ---------------------------------------

_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=255)
_items = st.lists(st.integers(1, MAX_ID), min_size=1, max_size=5, unique=True).flatmap(
    lambda ids: st.tuples(
        *[
            st.fixed_dictionaries(
                {
                    "order_item_id": st.just(i),
                    "sku": _text.filter(bool),
                    "quantity": st.integers(1, MAX_ID),
                    "deci": st.none() | st.floats(0, 1e9, allow_nan=False, allow_infinity=False),
                    "name": st.none() | _text,
                    "barcode": st.none() | _text,
                }
            )
            for i in ids
        ]
    ).map(list)
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=_items,
    package_id=_text.filter(bool),
    district=_text,
    note=st.none()
    | st.text(max_size=2000).filter(lambda s: "\x00" not in s and not any(0xD800 <= ord(c) <= 0xDFFF for c in s)),
    amount=st.decimals(0, 10**15, places=2, allow_nan=False, allow_infinity=False),
)
def test_any_package_with_values_the_contract_allows_is_accepted(items, package_id, district, note, amount):
    data = examples.packed(
        package_id=package_id, items=items, delivery_note=note, payment={"amount": str(amount), "currency": "TRY"}
    )
    data["destination"]["district"] = district

    packed = parse_event(examples.to_bytes(examples.envelope("PackagePacked", data))).data

    assert isinstance(packed, PackagePacked)
    assert [item.order_item_id for item in packed.items] == [item["order_item_id"] for item in items]
    assert packed.payment.amount == amount and packed.destination.district == district


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    field=st.sampled_from(STRING_FIELDS),
    prefix=st.text(max_size=20),
    suffix=st.text(max_size=20),
    bad=st.sampled_from(["\x00", "\ud800", "\udbff", "\udc00", "\udfff"]),
)
def test_a_forbidden_character_anywhere_in_any_string_is_refused_naming_its_field(field, prefix, suffix, bad):
    event_type, path, name, _ = field

    reason = _reason(_event(event_type, path, prefix + bad + suffix))

    assert reason.startswith(f"invalid {event_type} data: {name}: text holds ")


@pytest.mark.parametrize(
    "path, field, good, bad",
    [
        (("data", "destination", "country_code"), "destination.country_code", ["TR", "TUR"], ["T", "TURK", "T\u0000"]),
        (("data", "payment", "currency"), "payment.currency", ["TRY"], ["TR", "TRYX", "T\u0000Y"]),
    ],
)
def test_codes_keep_their_own_lengths(path, field, good, bad):
    for value in good:
        assert parse_event(_event("PackagePacked", path, value)).type == "PackagePacked"
    for value in bad:
        assert f"{field}: " in _reason(_event("PackagePacked", path, value))


# ---- operator commands (CONTRACT.md §2) -----------------------------------------------------------


def test_a_shipment_info_update_needs_one_field_besides_its_package_and_time_and_null_counts_as_absent():
    from contracts import EventRejected, parse_event

    def update(**fields):
        data = {"package_id": "PKG-1001", "updated_at": "2026-11-27T11:30:00Z", **fields}
        return examples.to_bytes(examples.envelope("ShipmentInfoUpdated", data))

    with pytest.raises(EventRejected, match="at least one of carrier, tracking_number"):
        parse_event(update())
    with pytest.raises(EventRejected, match="at least one of"):
        parse_event(update(carrier=None, tracking_number=None, tracking_url=None, shipping_company=None))
    assert parse_event(update(carrier=None, shipping_company="Other Cargo")).data.shipping_company == "Other Cargo"


def test_a_status_set_names_a_status_an_employee_may_set_and_commands_need_their_times():
    from contracts import EventRejected, parse_event

    def status_set(status, **extra):
        data = {"package_id": "PKG-1001", "status": status, "set_at": "2026-11-28T09:00:00Z", **extra}
        return examples.to_bytes(examples.envelope("ShipmentStatusSet", data))

    for status in ("ready_for_pickup", "attempted_delivery", "delivered", "delivery_failed"):
        assert parse_event(status_set(status)).data.status == status
    for status in ("shipped", "cancelled", "pending", "DELIVERED", ""):
        with pytest.raises(EventRejected, match="status"):
            parse_event(status_set(status))
    with pytest.raises(EventRejected, match="cancelled_at"):
        parse_event(examples.to_bytes(examples.envelope("PackageCancelled", {"package_id": "PKG-1001"})))
    with pytest.raises(EventRejected, match="reason"):
        parse_event(status_set("delivered", reason="x" * 2001))
