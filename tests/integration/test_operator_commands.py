"""The operator commands (CONTRACT.md §2 "Operator commands", §4 "Carriers without
integration"), row by row of the contract's tables, against the running services.

Raw commands are published with pika as upstream would; what follows is read where other
systems see it: the carriers' request logs, Omnitron's calls, the shipper's dead-letter
queue with its reasons, and the shipment's recorded history.
"""
from __future__ import annotations

import time

import pytest

from commands_world import MANUAL, RefusingCarrier, World, cancelled, info_updated, shipped, status_set
from harness import CARRIER_PASSWORD, wait_until
from services.standins.sandbox_carrier import SandboxCarrier


@pytest.fixture
def world(pipeline_factory):
    with SandboxCarrier(username="user", password=CARRIER_PASSWORD) as other, \
            RefusingCarrier(username="user", password=CARRIER_PASSWORD) as refusing:
        yield World(pipeline_factory(), other, refusing).start()


def _reasons(letters, event_type: str) -> dict[str, str]:
    return {letter["package_id"]: letter["reason"] for letter in letters if letter["type"] == event_type}


# ---- PackageCancelled ------------------------------------------------------------------------


def test_cancellation_in_each_status_follows_the_contracts_table(world):
    w = world
    w.pack("C-PEND", order_number="REJECT-C-PEND")  # the carrier refuses it: it stays pending
    w.pack("C-REG")
    w.pack("C-REFUSED")
    w.pack("C-SHIP", order_number="ORD-HOLD-C-SHIP")
    w.pack("C-HANDED", order_number="REJECT-C-HANDED")
    w.pack("C-TWICE")
    for package_id in ("C-REG", "C-REFUSED", "C-SHIP", "C-TWICE"):
        w.wait_status(package_id, "registered")
    registration_refusals = w.wait_dead_letters(2)  # REJECT-…: the registration's 400, dead-lettered
    assert sorted(letter["package_id"] for letter in registration_refusals) == ["C-HANDED", "C-PEND"]

    # registered, the carrier refuses the deletion (4xx): refused, with the carrier's reason.
    # Nothing is tracked yet, so the injected answer is the deletion's.
    w.sandbox.fail_next(1, status=422)
    w.publish(cancelled("C-REFUSED"))
    [refusal] = w.wait_dead_letters(1)
    assert refusal["package_id"] == "C-REFUSED"
    assert "the carrier refused the cancellation: HTTP 422" in refusal["reason"]
    assert w.shipment("C-REFUSED")["status"] == "registered"

    w.publish(shipped("C-SHIP"))
    w.publish(shipped("C-HANDED"))
    w.wait_status("C-SHIP", "shipped")
    wait_until(lambda: w.query("SELECT shipped_at FROM packages WHERE package_id = 'C-HANDED'")[0]["shipped_at"], 10)

    first = w.publish(cancelled("C-TWICE", reason="customer changed their mind"))
    w.publish(first)  # the same event delivered twice
    for package_id in ("C-PEND", "C-REG", "C-SHIP", "C-HANDED"):
        w.publish(cancelled(package_id))
    w.wait_status("C-TWICE", "cancelled")
    w.publish(cancelled("C-TWICE", reason="another cancellation"))  # cancelled: nothing

    w.wait_status("C-PEND", "cancelled")
    w.wait_status("C-REG", "cancelled")
    refusals = _reasons(w.wait_dead_letters(2), "PackageCancelled")
    assert set(refusals) == {"C-SHIP", "C-HANDED"}
    assert "already handed to the carrier" in refusals["C-SHIP"] and "shipment is shipped" in refusals["C-SHIP"]
    assert "already handed to the carrier" in refusals["C-HANDED"]
    assert "a PackageShipped has arrived" in refusals["C-HANDED"]

    # pending: cancelled, the carrier never asked again (only the refused registration).
    assert w.carrier_requests(w.sandbox, "C-PEND") == [("POST", "", 400)]
    assert w.history("C-PEND") == ["pending", "cancelled"]
    # registered: DELETE at the carrier (204), then cancelled.
    assert w.carrier_requests(w.sandbox, "C-REG") == [("POST", "", 201), ("DELETE", "/{id}", 204)]
    assert w.history("C-REG") == ["pending", "registered", "cancelled"]
    # shipped, or handed over while pending: nothing changed.
    assert w.history("C-SHIP") == ["pending", "registered", "shipped"]
    assert w.history("C-HANDED") == ["pending"]
    # delivered twice, then cancelled again: one cancellation, one DELETE.
    time.sleep(1.0)
    assert w.history("C-TWICE") == ["pending", "registered", "cancelled"]
    assert w.carrier_requests(w.sandbox, "C-TWICE") == [("POST", "", 201), ("DELETE", "/{id}", 204)]
    assert w.dead_letters() == []

    # Omnitron: the cancellation as an extra_field update, with its reason.
    calls = w.wait_omnitron("C-TWICE", lambda calls: any(c.get("extra", {}).get("status") == "cancelled"
                                                         for c in calls))
    [cancel_call] = [c["extra"] for c in calls if c.get("extra", {}).get("status") == "cancelled"]
    assert cancel_call["reason"] == "customer changed their mind"
    [registered_call] = [c["extra"] for c in calls if c.get("extra", {}).get("status") == "registered"]
    assert registered_call["label_url"].endswith(".pdf")
    change = w.changes("C-TWICE")[-1]
    assert (change["status"], change["reason"], change["carrier_status"]) == (
        "cancelled", "customer changed their mind", None)


# ---- ShipmentStatusSet -----------------------------------------------------------------------


def test_a_status_set_by_hand_follows_the_contracts_table(world):
    w = world
    for package_id in ("S-DELIVERED", "S-RFP", "S-FINAL"):
        w.pack(package_id, order_number=f"ORD-HOLD-{package_id}")
        w.publish(shipped(package_id))
    w.pack("S-FAILED", order_number="ORD-FAIL-S-FAILED")
    w.publish(shipped("S-FAILED"))
    w.pack("S-REG")
    w.pack("S-CANCELLED", order_number="REJECT-S-CANCELLED")
    for package_id in ("S-DELIVERED", "S-RFP", "S-FINAL"):
        w.wait_status(package_id, "shipped")
    w.wait_status("S-FAILED", "delivery_failed")
    w.wait_status("S-REG", "registered")
    w.wait_dead_letters(1)  # S-CANCELLED's refused registration
    w.publish(cancelled("S-CANCELLED"))
    w.wait_status("S-CANCELLED", "cancelled")

    w.publish(status_set("S-DELIVERED", "delivered"))
    w.publish(status_set("S-RFP", "ready_for_pickup", reason="at the store"))
    w.publish(status_set("S-FAILED", "delivered"))  # delivery_failed → delivered: the one way out
    w.publish(status_set("S-FINAL", "delivered"))
    w.wait_status("S-DELIVERED", "delivered")
    w.wait_status("S-RFP", "ready_for_pickup")
    w.wait_status("S-FAILED", "delivered")
    w.wait_status("S-FINAL", "delivered")
    polls = len(w.carrier_requests(w.sandbox, "S-DELIVERED"))

    w.publish(status_set("S-RFP", "attempted_delivery"))  # earlier than ready_for_pickup
    w.publish(status_set("S-RFP", "ready_for_pickup"))  # the status it has: nothing, no dead letter
    w.publish(status_set("S-REG", "delivered"))  # not shipped yet
    w.publish(status_set("S-CANCELLED", "delivered"))
    w.publish(status_set("S-FINAL", "delivery_failed"))  # delivered is final
    refusals = w.wait_dead_letters(4)
    by_package = {letter["package_id"]: letter["reason"] for letter in refusals}
    assert set(by_package) == {"S-RFP", "S-REG", "S-CANCELLED", "S-FINAL"}
    assert "earlier than its status ready_for_pickup" in by_package["S-RFP"]
    assert "only from shipped, ready_for_pickup, attempted_delivery or delivery_failed" in by_package["S-REG"]
    assert "the shipment is registered" in by_package["S-REG"]
    assert "the shipment is cancelled" in by_package["S-CANCELLED"]
    assert "the shipment is delivered" in by_package["S-FINAL"]

    assert w.history("S-DELIVERED") == ["pending", "registered", "shipped", "delivered"]
    assert w.history("S-RFP") == ["pending", "registered", "shipped", "ready_for_pickup"]
    assert w.history("S-FAILED") == ["pending", "registered", "shipped", "delivery_failed", "delivered"]
    final = w.changes("S-DELIVERED")[-1]
    assert (final["carrier_status"], final["reason"]) == ("", "customer picked it up at the store")
    # A final set by hand stops tracking; a non-final one does not.
    assert w.shipment("S-DELIVERED")["next_poll_at"] is None
    assert w.shipment("S-RFP")["next_poll_at"] is not None
    time.sleep(1.5)  # five poll intervals
    assert len(w.carrier_requests(w.sandbox, "S-DELIVERED")) == polls
    # Omnitron: the codes of the statuses set.
    w.wait_omnitron("S-DELIVERED", lambda calls: calls and calls[-1].get("bulk", {}).get("status") == "550")
    w.wait_omnitron("S-FAILED", lambda calls: calls and calls[-1].get("bulk", {}).get("status") == "550")
    w.wait_omnitron("S-RFP", lambda calls: calls and calls[-1].get("bulk", {}).get("status") == "520")


def test_a_status_name_that_is_not_settable_is_dead_lettered_as_invalid(world):
    w = world
    w.pack("S-BAD", order_number="ORD-HOLD-S-BAD")
    w.publish(shipped("S-BAD"))
    w.wait_status("S-BAD", "shipped")
    w.publish(status_set("S-BAD", "shipped"))
    w.publish(status_set("S-BAD", "lost"))
    letters = w.wait_dead_letters(2)
    assert all("invalid ShipmentStatusSet data: status: Input should be" in letter["reason"] for letter in letters), letters
    assert w.history("S-BAD") == ["pending", "registered", "shipped"]
