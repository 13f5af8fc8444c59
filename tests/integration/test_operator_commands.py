"""The operator commands (CONTRACT.md §2 "Operator commands", §4 "Carriers without
integration"), row by row of the contract's tables, against the running services.

Raw commands are published with pika as upstream would; what follows is read where other
systems see it: the carriers' request logs, Omnitron's calls, the shipper's dead-letter
queue with its reasons, and the shipment's recorded history.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from commands_world import MANUAL, RefusingCarrier, World, cancelled, info_updated, shipped, status_set

from services.standins.sandbox_carrier import SandboxCarrier

import harness
from harness import CARRIER_PASSWORD, wait_until


@pytest.fixture
def world(pipeline_factory):
    with (
        SandboxCarrier(username="user", password=CARRIER_PASSWORD) as other,
        RefusingCarrier(username="user", password=CARRIER_PASSWORD) as refusing,
    ):
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
    # registered, the carrier has no such shipment (404): counted as already deleted.
    w.pack("C-GONE")
    w.wait_status("C-GONE", "registered")
    w.sandbox.fail_next(1, status=404)
    w.publish(cancelled("C-GONE"))
    w.wait_status("C-GONE", "cancelled")
    assert w.carrier_requests(w.sandbox, "C-GONE") == [("POST", "", 201), ("DELETE", "/{id}", 404)]

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
    # delivered twice, then cancelled again: one cancellation. Two copies handled at once may both
    # delete at the carrier (repeatable: 404 counts as done); one of them is applied.
    time.sleep(1.0)
    assert w.history("C-TWICE") == ["pending", "registered", "cancelled"]
    requests = w.carrier_requests(w.sandbox, "C-TWICE")
    assert requests[0] == ("POST", "", 201) and set(requests[1:]) == {("DELETE", "/{id}", 204)}
    assert len(requests) in (2, 3)
    assert w.dead_letters() == []

    # Omnitron: the cancellation as an extra_field update, with its reason.
    calls = w.wait_omnitron(
        "C-TWICE", lambda calls: any(c.get("extra", {}).get("status") == "cancelled" for c in calls)
    )
    [cancel_call] = [c["extra"] for c in calls if c.get("extra", {}).get("status") == "cancelled"]
    assert cancel_call["reason"] == "customer changed their mind"
    [registered_call] = [c["extra"] for c in calls if c.get("extra", {}).get("status") == "registered"]
    assert registered_call["label_url"].endswith(".pdf")
    change = w.changes("C-TWICE")[-1]
    assert (change["status"], change["reason"], change["carrier_status"]) == (
        "cancelled",
        "customer changed their mind",
        None,
    )


# ---- ShipmentStatusSet -----------------------------------------------------------------------


def test_a_status_set_by_hand_follows_the_contracts_table(world):
    w = world
    for package_id in ("S-DELIVERED", "S-RFP", "S-FINAL"):
        w.pack(package_id, order_number=f"ORD-HOLD-{package_id}")
        w.publish(shipped(package_id))
    w.pack("S-FAILED", order_number="ORD-FAIL-S-FAILED")
    w.publish(shipped("S-FAILED"))
    w.pack("S-ATT", order_number="ORD-ATT-S-ATT")
    w.publish(shipped("S-ATT"))
    w.pack("S-REG")
    w.pack("S-CANCELLED", order_number="REJECT-S-CANCELLED")
    for package_id in ("S-DELIVERED", "S-RFP", "S-FINAL"):
        w.wait_status(package_id, "shipped")
    w.wait_status("S-FAILED", "delivery_failed")
    w.wait_status("S-ATT", "attempted_delivery")
    w.wait_status("S-REG", "registered")
    w.wait_dead_letters(1)  # S-CANCELLED's refused registration
    w.publish(cancelled("S-CANCELLED"))
    w.wait_status("S-CANCELLED", "cancelled")

    w.publish(status_set("S-DELIVERED", "delivered"))
    w.publish(status_set("S-RFP", "ready_for_pickup", reason="at the store"))
    w.publish(status_set("S-FAILED", "delivered"))  # delivery_failed → delivered: the one way out
    w.publish(status_set("S-FINAL", "delivered"))
    w.publish(status_set("S-ATT", "ready_for_pickup"))  # from attempted_delivery
    w.wait_status("S-ATT", "ready_for_pickup")
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
    assert all("invalid ShipmentStatusSet data: status: Input should be" in letter["reason"] for letter in letters), (
        letters
    )
    assert w.history("S-BAD") == ["pending", "registered", "shipped"]


# ---- ShipmentInfoUpdated ---------------------------------------------------------------------


def test_a_carrier_change_registers_at_the_new_carrier_deletes_at_the_old_and_tracks_at_the_new(world):
    w = world
    w.pack("I-MOVE")
    w.pack("I-PEND", order_number="REJECT-I-PEND")  # the sandbox refuses it: pending
    w.pack("I-BACK")
    w.pack("I-NEW-4XX")
    w.pack("I-TO-MANUAL")
    w.other.rejecting = False
    w.wait_status("I-MOVE", "registered")
    w.wait_status("I-BACK", "registered")
    w.wait_status("I-NEW-4XX", "registered")
    w.wait_status("I-TO-MANUAL", "registered")
    w.wait_dead_letters(1)
    before = w.shipment("I-MOVE")

    w.publish(info_updated("I-MOVE", carrier="other"))
    w.publish(info_updated("I-PEND", carrier="other"))
    w.publish(info_updated("I-BACK", carrier="other"))
    w.publish(info_updated("I-NEW-4XX", carrier="refusing"))
    w.publish(info_updated("I-TO-MANUAL", carrier=MANUAL, shipping_company="Local Courier"))
    moved = wait_until(lambda: (s := w.shipment("I-MOVE"))["carrier"] == "other" and s, 30)
    w.wait_status("I-PEND", "registered")
    wait_until(lambda: w.shipment("I-BACK")["carrier"] == "other", 30)
    w.publish(info_updated("I-BACK", carrier="sandbox", updated_at="2026-11-27T11:40:00Z"))
    refusals = {letter["package_id"]: letter["reason"] for letter in w.wait_dead_letters(2)}
    assert "the shipment was registered at sandbox before" in refusals["I-BACK"]
    assert "the carrier refusing refused the registration, so the update is refused: HTTP 400" in refusals["I-NEW-4XX"]
    assert w.shipment("I-NEW-4XX")["carrier"] == "sandbox"  # the old registration stands

    # registered: a POST at the new carrier, then a DELETE at the old; its status kept.
    assert w.carrier_requests(w.other, "I-MOVE") == [("POST", "", 201)]
    wait_until(lambda: w.carrier_requests(w.sandbox, "I-MOVE") == [("POST", "", 201), ("DELETE", "/{id}", 204)], 10)
    # (both stand-ins derive the number from the shipmentId: their URLs tell them apart)
    assert moved["status"] == "registered" and moved["tracking_url"] != before["tracking_url"]
    assert moved["tracking_url"].startswith(w.other.url) and moved["label_url"].startswith(w.other.url)
    assert w.history("I-MOVE") == ["pending", "registered", "registered"]
    info_change = w.changes("I-MOVE")[-1]
    assert (info_change["previous_status"], info_change["status"], info_change["carrier"]) == (
        "registered",
        "registered",
        "other",
    )
    # pending: registered at the new carrier (its registration is the update's change).
    assert w.carrier_requests(w.other, "I-PEND") == [("POST", "", 201)]
    assert w.history("I-PEND") == ["pending", "registered"]
    assert w.shipment("I-PEND")["carrier"] == "other"
    # Omnitron shows the new tracking number.
    calls = w.wait_omnitron(
        "I-MOVE", lambda calls: any(c.get("extra", {}).get("tracking_url") == moved["tracking_url"] for c in calls)
    )
    assert calls[-1]["extra"]["carrier"] == "other" and calls[-1]["extra"]["sequence"] == 3

    # To a carrier without integration, registered: deleted at the old carrier, not tracked; its
    # PackageShipped ships it with what it gives.
    wait_until(
        lambda: w.carrier_requests(w.sandbox, "I-TO-MANUAL") == [("POST", "", 201), ("DELETE", "/{id}", 204)], 10
    )
    manual = w.shipment("I-TO-MANUAL")
    assert (manual["carrier"], manual["status"], manual["tracking_number"], manual["label_url"]) == (
        MANUAL,
        "registered",
        None,
        None,
    )
    w.publish(shipped("I-TO-MANUAL", tracking_number="MAN-9", tracking_url="https://courier.example/MAN-9"))
    manual = w.wait_status("I-TO-MANUAL", "shipped")
    assert (manual["tracking_number"], manual["shipping_company"], manual["next_poll_at"]) == (
        "MAN-9",
        "Local Courier",
        None,
    )
    assert w.history("I-TO-MANUAL") == ["pending", "registered", "registered", "shipped"]

    # Handed over: tracked at the new carrier only.
    sandbox_requests = len(w.carrier_requests(w.sandbox, "I-MOVE"))
    w.publish(shipped("I-MOVE"))
    w.wait_status("I-MOVE", "shipped")
    wait_until(lambda: any(r[0] == "GET" for r in w.carrier_requests(w.other, "I-MOVE")), 10)
    time.sleep(1.0)
    assert len(w.carrier_requests(w.sandbox, "I-MOVE")) == sandbox_requests


def test_information_updates_in_each_status_follow_the_contracts_table(world):
    w = world
    for package_id in ("I-TO-OTHER", "I-NUMBER", "I-COMPANY", "I-MANUAL", "I-OLDER"):
        w.pack(package_id, order_number=f"ORD-HOLD-{package_id}")
        w.publish(shipped(package_id))
    w.pack("I-FAILED", order_number="ORD-FAIL-I-FAILED")
    w.publish(shipped("I-FAILED"))
    w.pack("I-CANCELLED")
    w.publish(cancelled("I-CANCELLED"))
    for package_id in ("I-TO-OTHER", "I-NUMBER", "I-COMPANY", "I-MANUAL", "I-OLDER"):
        w.wait_status(package_id, "shipped")
    w.wait_status("I-FAILED", "delivery_failed")
    w.wait_status("I-CANCELLED", "cancelled")

    w.publish(info_updated("I-CANCELLED", shipping_company="Acme Cargo"))
    w.publish(info_updated("I-TO-OTHER", carrier="other"))  # integrated, after the hand-over
    w.publish(info_updated("I-NUMBER", tracking_number="ABC123"))  # the integrated carrier's number stands
    w.publish(info_updated("I-COMPANY", shipping_company="Acme Cargo"))
    w.publish(
        info_updated(
            "I-MANUAL",
            carrier=MANUAL,
            tracking_number="MAN-1",
            tracking_url="https://courier.example/MAN-1",
            shipping_company="Local Courier",
        )
    )
    w.publish(info_updated("I-FAILED", shipping_company="Acme Cargo"))
    w.publish(info_updated("I-OLDER", shipping_company="Newer", updated_at="2026-11-27T12:00:00Z"))
    wait_until(lambda: w.shipment("I-OLDER")["shipping_company"] == "Newer", 30)
    w.publish(info_updated("I-OLDER", shipping_company="Older", updated_at="2026-11-27T11:00:00Z"))
    w.publish(
        info_updated("I-OLDER", carrier="nowhere", updated_at="2026-11-27T13:00:00Z")
    )  # a typo: no manual carrier
    refusals = {letter["package_id"]: letter["reason"] for letter in w.wait_dead_letters(5)}
    assert "the shipment is cancelled" in refusals["I-CANCELLED"]
    assert "allowed only in pending and registered; the shipment is shipped" in refusals["I-TO-OTHER"]
    assert "its own tracking number and URL stand" in refusals["I-NUMBER"]
    assert "the shipment is delivery_failed" in refusals["I-FAILED"]
    assert "unknown carrier 'nowhere'" in refusals["I-OLDER"]

    company = wait_until(lambda: (s := w.shipment("I-COMPANY"))["shipping_company"] == "Acme Cargo" and s, 30)
    assert company["carrier"] == "sandbox" and company["tracking_number"].startswith("SBX")
    calls = w.wait_omnitron(
        "I-COMPANY", lambda calls: any(c.get("extra", {}).get("shipping_company") == "Acme Cargo" for c in calls)
    )
    assert calls[-2]["bulk"]["status"] == "500"  # a coded status: the bulk update and the extra_field
    assert calls[-1]["extra"]["status"] == "shipped"

    manual = wait_until(lambda: (s := w.shipment("I-MANUAL"))["carrier"] == MANUAL and s, 30)
    assert (manual["tracking_number"], manual["tracking_url"], manual["shipping_company"], manual["next_poll_at"]) == (
        "MAN-1",
        "https://courier.example/MAN-1",
        "Local Courier",
        None,
    )
    wait_until(lambda: w.carrier_requests(w.sandbox, "I-MANUAL")[-1][:2] == ("DELETE", "/{id}"), 10)
    polls = len(w.carrier_requests(w.sandbox, "I-MANUAL"))
    calls = w.wait_omnitron(
        "I-MANUAL", lambda calls: any(c.get("bulk", {}).get("tracking_number") == "MAN-1" for c in calls)
    )
    assert calls[-2]["bulk"] == {
        "id": min(w.items["I-MANUAL"]),
        "status": "500",
        "tracking_number": "MAN-1",
        "shipping_company": MANUAL,
    }
    assert calls[-1]["extra"]["shipping_company"] == "Local Courier"
    time.sleep(1.0)
    assert len(w.carrier_requests(w.sandbox, "I-MANUAL")) == polls  # tracking stopped
    assert w.history("I-MANUAL") == ["pending", "registered", "shipped", "shipped"]

    time.sleep(0.5)
    assert w.shipment("I-OLDER")["shipping_company"] == "Newer"  # the older update: no effect
    assert w.history("I-OLDER") == ["pending", "registered", "shipped", "shipped"]
    assert w.dead_letters() == []


# ---- carriers without integration -------------------------------------------------------------


def test_a_carrier_without_integration_is_never_registered_or_polled_and_ships_by_hand(world):
    w = world
    w.pack("M-1", carrier=MANUAL)
    w.publish(shipped("M-2", tracking_number="MAN-2", shipping_company="Local Courier"))  # before its packing
    w.pack("M-2", carrier=MANUAL)
    w.pack("M-TYPO", carrier="curier")
    w.wait_status("M-2", "shipped")
    w.wait_omnitron("M-1", lambda calls: len(calls) >= 1)
    assert w.shipment("M-1")["status"] == "pending"
    w.publish(
        shipped(
            "M-1",
            tracking_number="MAN-1",
            tracking_url="https://courier.example/MAN-1",
            shipping_company="Local Courier",
        )
    )
    m1 = w.wait_status("M-1", "shipped")
    assert (m1["tracking_number"], m1["tracking_url"], m1["shipping_company"], m1["next_poll_at"]) == (
        "MAN-1",
        "https://courier.example/MAN-1",
        "Local Courier",
        None,
    )
    assert w.history("M-1") == ["pending", "shipped"]
    calls = w.wait_omnitron("M-1", lambda calls: any("bulk" in c for c in calls))
    assert calls[1]["bulk"] == {
        "id": min(w.items["M-1"]),
        "status": "500",
        "tracking_number": "MAN-1",
        "shipping_company": MANUAL,
    }
    w.wait_omnitron(
        "M-1", lambda calls: any(c.get("extra", {}).get("shipping_company") == "Local Courier" for c in calls)
    )
    w.pipeline.cli("set-status", "M-1", "delivered", "--reason", "the courier says so")
    w.wait_status("M-1", "delivered")
    assert w.changes("M-1")[-1]["reason"] == "the courier says so"
    [typo] = w.wait_dead_letters(1, service="packer")
    assert "unknown carrier 'curier'" in typo["reason"]
    for carrier in (w.sandbox, w.other):
        assert w.carrier_requests(carrier, "M-1") == [] and w.carrier_requests(carrier, "M-2") == []


# ---- order with the rest of the flow ----------------------------------------------------------


def test_commands_before_their_package_is_packed_are_applied_once_it_is(world):
    w = world
    early_cancel = cancelled("E-CANCEL")
    w.publish(early_cancel)
    w.publish(early_cancel)  # and twice
    w.publish(info_updated("E-INFO", shipping_company="Acme Cargo"))
    w.publish(status_set("E-SET", "delivered"))
    wait_until(lambda: len(w.query("SELECT * FROM waiting_commands")) == 3, 10)
    w.pack("E-CANCEL")
    w.pack("E-INFO")
    w.pack("E-SET")
    w.wait_status("E-CANCEL", "cancelled")
    assert w.history("E-CANCEL") == ["pending", "cancelled"]
    wait_until(lambda: w.shipment("E-INFO")["shipping_company"] == "Acme Cargo", 30)
    w.wait_status("E-SET", "registered")
    [refusal] = w.wait_dead_letters(1)
    assert refusal["package_id"] == "E-SET" and "the shipment is" in refusal["reason"]
    time.sleep(0.5)
    assert w.carrier_requests(w.sandbox, "E-CANCEL") == []  # never asked to register it
    assert w.query("SELECT * FROM waiting_commands") == []
    assert w.dead_letters() == []


# ---- the command line --------------------------------------------------------------------------


@pytest.fixture
def stale_world(pipeline_factory):
    with (
        SandboxCarrier(username="user", password=CARRIER_PASSWORD) as other,
        RefusingCarrier(username="user", password=CARRIER_PASSWORD) as refusing,
    ):
        yield World(pipeline_factory(), other, refusing, max_tracking_age_s=1).start()


def test_the_command_line_publishes_commands_and_shows_labels_and_stale_shipments(stale_world):
    w = stale_world
    w.pack("CLI-1", order_number="ORD-HOLD-CLI-1")
    w.pack("CLI-2")
    w.publish(shipped("CLI-1"))
    w.wait_status("CLI-2", "registered")
    label = w.pipeline.cli("label", "CLI-2").stdout.strip()
    assert label == w.shipment("CLI-2")["label_url"] and label.endswith(".pdf")
    assert "label " + label in w.pipeline.cli("status", "CLI-2").stdout.replace("\n", "")
    w.pipeline.cli("cancel", "CLI-2", "--reason", "customer cancelled")
    w.wait_status("CLI-2", "cancelled")
    assert w.changes("CLI-2")[-1]["reason"] == "customer cancelled"

    wait_until(lambda: w.shipment("CLI-1")["stale_at"] is not None, 30, message="the tracker to give up on CLI-1")
    stale = w.pipeline.cli("stale", "--json").stdout.splitlines()
    [row] = [json.loads(line) for line in stale]
    assert (row["package_id"], row["carrier"], row["status"], row["carrier_status"]) == (
        "CLI-1",
        "sandbox",
        "shipped",
        "CREATED",
    )  # the last carrier status recorded with a change
    assert "CLI-1" in w.pipeline.cli("stale").stdout
    w.pipeline.cli("update-info", "CLI-1", "--shipping-company", "Acme Cargo")
    wait_until(lambda: w.shipment("CLI-1")["shipping_company"] == "Acme Cargo", 30)
    w.pipeline.cli("set-status", "CLI-1", "delivered", "--reason", "customer confirmed")
    w.wait_status("CLI-1", "delivered")
    assert w.pipeline.cli("stale", "--json").stdout.strip() == ""

    bad = subprocess.run(
        [str(harness.BIN), "set-status", "CLI-1", "lost", "--reason", "x"],
        env=w.pipeline.env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "not a status an employee may set" in bad.stderr
    missing = subprocess.run([str(harness.BIN), "cancel", "CLI-1"], env=w.pipeline.env, capture_output=True, text=True)
    assert missing.returncode == 2 and "--reason" in missing.stderr
    nothing = subprocess.run(
        [str(harness.BIN), "update-info", "CLI-1"], env=w.pipeline.env, capture_output=True, text=True
    )
    assert nothing.returncode == 2 and "give at least one of" in nothing.stderr
    no_label = subprocess.run([str(harness.BIN), "label", "NOPE"], env=w.pipeline.env, capture_output=True, text=True)
    assert no_label.returncode == 1
