"""Shipment statuses only move forward, final ones never move; routing keys follow the contract."""

from __future__ import annotations

import pytest

from contracts import FINAL_STATUSES, OMNITRON_ITEM_STATUS, ShipmentStatus, can_transition, parse_event, routing_key_for
from contracts.statuses import allowed_transitions

import contract_examples as examples

S = ShipmentStatus

# The whole table: from each status, every status it may move to.
EXPECTED_TRANSITIONS = {
    S.PENDING: {
        S.REGISTERED,
        S.SHIPPED,
        S.ATTEMPTED_DELIVERY,
        S.READY_FOR_PICKUP,
        S.DELIVERED,
        S.DELIVERY_FAILED,
        S.CANCELLED,
    },
    S.REGISTERED: {S.SHIPPED, S.ATTEMPTED_DELIVERY, S.READY_FOR_PICKUP, S.DELIVERED, S.DELIVERY_FAILED, S.CANCELLED},
    S.SHIPPED: {S.ATTEMPTED_DELIVERY, S.READY_FOR_PICKUP, S.DELIVERED, S.DELIVERY_FAILED, S.CANCELLED},
    S.ATTEMPTED_DELIVERY: {S.READY_FOR_PICKUP, S.DELIVERED, S.DELIVERY_FAILED, S.CANCELLED},
    S.READY_FOR_PICKUP: {S.DELIVERED, S.DELIVERY_FAILED, S.CANCELLED},
    S.DELIVERED: set(),
    S.DELIVERY_FAILED: set(),
    S.CANCELLED: set(),
}


def test_the_transition_table_is_exactly_the_expected_one():
    assert allowed_transitions() == {status: frozenset(targets) for status, targets in EXPECTED_TRANSITIONS.items()}


def test_the_contract_lists_eight_statuses_three_of_them_final():
    assert [s.value for s in ShipmentStatus] == [
        "pending",
        "registered",
        "shipped",
        "attempted_delivery",
        "ready_for_pickup",
        "delivered",
        "delivery_failed",
        "cancelled",
    ]
    assert FINAL_STATUSES == {S.DELIVERED, S.DELIVERY_FAILED, S.CANCELLED}
    assert [s for s in ShipmentStatus if s.is_final] == [S.DELIVERED, S.DELIVERY_FAILED, S.CANCELLED]


def test_a_new_shipment_can_only_start_pending():
    assert can_transition(None, S.PENDING)
    assert [s for s in ShipmentStatus if can_transition(None, s)] == [S.PENDING]


@pytest.mark.parametrize("final", sorted(FINAL_STATUSES, key=lambda s: s.value))
def test_a_final_status_never_changes_again(final):
    assert [new for new in ShipmentStatus if can_transition(final, new)] == []


@pytest.mark.parametrize(
    "current, stale",
    [
        (S.REGISTERED, S.PENDING),
        (S.SHIPPED, S.REGISTERED),
        (S.ATTEMPTED_DELIVERY, S.SHIPPED),
        (S.READY_FOR_PICKUP, S.ATTEMPTED_DELIVERY),
        (S.READY_FOR_PICKUP, S.SHIPPED),
        (S.DELIVERED, S.SHIPPED),
    ],
)
def test_a_stale_status_of_a_lower_rank_is_refused(current, stale):
    assert not can_transition(current, stale)


@pytest.mark.parametrize("status", list(ShipmentStatus))
def test_a_repeated_status_is_refused(status):
    assert not can_transition(status, status)


@pytest.mark.parametrize("status", [s for s in ShipmentStatus if not s.is_final])
def test_a_carrier_can_cancel_any_shipment_that_is_not_final(status):
    assert can_transition(status, S.CANCELLED)


def test_omnitron_item_codes_are_the_contracts():
    assert OMNITRON_ITEM_STATUS == {
        S.SHIPPED: "500",
        S.READY_FOR_PICKUP: "520",
        S.ATTEMPTED_DELIVERY: "540",
        S.DELIVERED: "550",
    }


def test_upstream_events_travel_under_their_fixed_routing_keys():
    packed = parse_event(examples.to_bytes(examples.example("PackagePacked"))).data
    shipped = parse_event(examples.to_bytes(examples.example("PackageShipped"))).data

    assert routing_key_for("PackagePacked", packed) == "package.packed"
    assert routing_key_for("PackageShipped", shipped) == "package.shipped"


@pytest.mark.parametrize("status", [s.value for s in ShipmentStatus])
def test_a_status_change_travels_under_a_routing_key_naming_its_new_status(status):
    data = examples.status_changed(3, status, "registered")
    change = parse_event(examples.to_bytes(examples.envelope("ShipmentStatusChanged", data))).data

    # status = previous status is an information change (CONTRACT.md §1, §2), under its own prefix
    prefix = "shipment.info_changed." if status == "registered" else "shipment.status_changed."
    assert routing_key_for("ShipmentStatusChanged", change) == f"{prefix}{status}"
