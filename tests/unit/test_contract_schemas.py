"""The exported JSON Schemas accept the contract's example events and refuse broken ones."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from contracts import EVENT_MODELS
from contracts.schemas import event_schemas, export_json_schemas

import contract_examples as examples

EVENT_TYPES = list(examples.EXAMPLE_DATA)


def _validator(event_type: str) -> Draft202012Validator:
    schema = event_schemas()[event_type]
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_there_is_one_schema_per_event_type():
    assert sorted(event_schemas()) == sorted(EVENT_MODELS) == sorted(EVENT_TYPES)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_the_contracts_example_event_is_valid_against_its_exported_schema(event_type):
    errors = list(_validator(event_type).iter_errors(examples.example(event_type)))

    assert errors == []


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_an_example_with_unknown_attributes_and_fields_is_still_valid(event_type):
    body = examples.example(event_type)
    body["traceparent"] = "00-abc-def-01"
    body["data"]["something_new"] = {"x": 1}

    assert list(_validator(event_type).iter_errors(body)) == []


def test_the_package_packed_schema_refuses_a_package_without_order_number_or_items():
    body = examples.example("PackagePacked")
    del body["data"]["order_number"]
    body["data"]["items"] = []

    messages = sorted(error.message for error in _validator("PackagePacked").iter_errors(body))

    assert messages == ["'order_number' is a required property", "[] should be non-empty"]


def test_a_schema_refuses_an_event_of_another_type():
    body = examples.example("PackageShipped")

    errors = list(_validator("PackagePacked").iter_errors(body))

    assert any(list(error.path) == ["type"] for error in errors)


def test_the_status_changed_schema_refuses_an_unknown_status():
    body = examples.example("ShipmentStatusChanged")
    body["data"]["status"] = "lost"

    assert not _validator("ShipmentStatusChanged").is_valid(body)


def test_exported_schema_files_hold_the_same_schemas(tmp_path):
    written = export_json_schemas(tmp_path / "schemas")

    assert sorted(p.name for p in written) == sorted(f"{name}.schema.json" for name in EVENT_TYPES)
    for path in written:
        assert json.loads(path.read_text()) == event_schemas()[path.name.removesuffix(".schema.json")]


def _data_errors(event_type: str, path: tuple, value) -> list[str]:
    body = examples.example(event_type)
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return [error.message for error in _validator(event_type).iter_errors(body)]


@pytest.mark.parametrize(
    "path, value",
    [
        (("data", "items", 0, "order_item_id"), True),
        (("data", "items", 0, "order_item_id"), "555"),
        (("data", "items", 0, "order_item_id"), 0),
        (("data", "items", 0, "order_item_id"), 2**63),
        (("data", "items", 0, "quantity"), -1),
        (("data", "items", 0, "deci"), -0.5),
        (("data", "items", 0, "deci"), "1.5"),
        (("data", "package_id"), "x" * 256),
        (("data", "package_id"), ""),
        (("data", "delivery_note"), "x" * 2001),
        (("data", "destination", "address_line"), "x" * 2001),
        (("data", "destination", "city"), "Istan\u0000bul"),
        (("data", "payment", "amount"), "1e3"),
        (("data", "payment", "amount"), True),
        (("data", "payment", "amount"), -1),
        (("data", "payment", "currency"), "TRYX"),
        (("id",), "x" * 256),
        (("source",), ""),
        (("subject",), "PKG\u00001001"),
    ],
)
def test_the_exported_schema_refuses_the_values_the_models_refuse(path, value):
    assert _data_errors("PackagePacked", path, value), f"{path} = {value!r} passed the schema"


@pytest.mark.parametrize(
    "path, value",
    [
        (("data", "items", 0, "order_item_id"), 2**63 - 1),
        (("data", "package_id"), "x" * 255),
        (("data", "delivery_note"), "x" * 2000),
        (("data", "payment", "amount"), 120.5),
        (("data", "payment", "amount"), "0.0001"),
        (("data", "destination", "district"), "Beyoğlu 🏬"),
    ],
)
def test_the_exported_schema_accepts_the_values_the_models_accept(path, value):
    assert _data_errors("PackagePacked", path, value) == []


def test_the_exported_schema_refuses_a_status_changes_sequence_that_is_not_a_positive_integer():
    for value in (0, True, "3"):
        assert _data_errors("ShipmentStatusChanged", ("data", "sequence"), value)
