"""The Shipment aggregate: numbered changes, only ever forward."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from contracts import ShipmentStatus as S
from services.domain.model import Shipment

import contract_examples as examples

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)


def _packed(item_ids=(555, 556)):
    return examples.parsed("PackagePacked", examples.packed(item_ids=item_ids)).data


def _history(shipment: Shipment) -> list[tuple[int, S | None, S]]:
    return [(c.sequence, c.previous_status, c.status) for c in shipment.changes]


def test_a_shipment_opens_pending_as_its_first_numbered_change():
    shipment = Shipment.open_for(_packed(), T0)

    assert (shipment.status, shipment.sequence) == (S.PENDING, 1)
    assert shipment.order_item_ids == [555, 556]
    [change] = shipment.changes
    assert change.model_dump(exclude={"label_url", "shipping_company", "reason"}) == {
        "shipment_id": shipment.id,
        "package_id": "PKG-1001",
        "order_number": "ORD-1001",
        "carrier": "sandbox",
        "tracking_number": None,
        "tracking_url": None,
        "previous_status": None,
        "status": S.PENDING,
        "carrier_status": None,
        "sequence": 1,
        "changed_at": T0,
        "order_item_ids": [555, 556],
    }


def test_two_packages_get_two_different_shipment_ids():
    assert Shipment.open_for(_packed(), T0).id != Shipment.open_for(_packed(), T0).id


def test_each_forward_move_numbers_its_change_and_names_the_previous_status():
    shipment = Shipment.open_for(_packed(), T0)

    assert shipment.register("SBX1", "https://t/SBX1", "https://l/SBX1.pdf", "CREATED", T0 + timedelta(minutes=1))
    assert shipment.move_to(S.SHIPPED, T0 + timedelta(minutes=2), "SHIPPING")
    assert shipment.move_to(S.DELIVERED, T0 + timedelta(minutes=3), "DELIVERED")

    assert _history(shipment) == [
        (1, None, S.PENDING),
        (2, S.PENDING, S.REGISTERED),
        (3, S.REGISTERED, S.SHIPPED),
        (4, S.SHIPPED, S.DELIVERED),
    ]
    assert (shipment.status, shipment.sequence, shipment.carrier_status) == (S.DELIVERED, 4, "DELIVERED")


def test_registration_records_the_tracking_data_on_the_shipment_and_its_change():
    shipment = Shipment.open_for(_packed(), T0)

    shipment.register("SBX1", "https://t/SBX1", "https://l/SBX1.pdf", "CREATED", T0)

    assert (shipment.tracking_number, shipment.tracking_url, shipment.label_url) == (
        "SBX1",
        "https://t/SBX1",
        "https://l/SBX1.pdf",
    )
    registered = shipment.changes[-1]
    assert (registered.tracking_number, registered.tracking_url, registered.carrier_status) == (
        "SBX1",
        "https://t/SBX1",
        "CREATED",
    )


def test_a_shipment_that_is_not_pending_is_not_registered_again():
    shipment = Shipment.open_for(_packed(), T0)
    shipment.register("SBX1", None, None, "CREATED", T0)

    assert not shipment.register("SBX2", "https://t/SBX2", None, "CREATED", T0)
    assert shipment.tracking_number == "SBX1"
    assert shipment.sequence == 2


def test_a_stale_status_is_refused_and_records_nothing():
    shipment = Shipment.open_for(_packed(), T0)
    shipment.move_to(S.ATTEMPTED_DELIVERY, T0, "ATTEMPTED_DELIVERY")

    assert not shipment.move_to(S.SHIPPED, T0, "SHIPPING")

    assert (shipment.status, shipment.sequence, shipment.carrier_status) == (
        S.ATTEMPTED_DELIVERY,
        2,
        "ATTEMPTED_DELIVERY",
    )
    assert len(shipment.changes) == 2


def test_a_repeated_status_is_refused():
    shipment = Shipment.open_for(_packed(), T0)
    shipment.move_to(S.SHIPPED, T0)

    assert not shipment.move_to(S.SHIPPED, T0 + timedelta(hours=1))
    assert shipment.sequence == 2


def test_nothing_moves_a_delivered_shipment():
    shipment = Shipment.open_for(_packed(), T0)
    shipment.move_to(S.DELIVERED, T0)

    assert [s for s in S if shipment.move_to(s, T0)] == []
    assert shipment.sequence == 2


def test_a_loaded_shipment_continues_its_numbering():
    shipment = Shipment(
        id="shp-1",
        package_id="PKG-1",
        order_number="ORD-1",
        carrier="sandbox",
        order_item_ids=[1],
        status=S.SHIPPED,
        sequence=3,
    )

    assert shipment.move_to(S.READY_FOR_PICKUP, T0, "READY_FOR_PICKUP")
    assert _history(shipment) == [(4, S.SHIPPED, S.READY_FOR_PICKUP)]
