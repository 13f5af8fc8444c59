"""The operator commands against the rest of the flow, each race made to happen: a
cancellation while the registration is in flight, an employee's status set while a carrier
poll is in flight, duplicates, a kill -9 of the shipper between a command's commit and its
ack (and between a deletion at the carrier and the commit), and carrier changes under load.
"""

from __future__ import annotations

import time

import pytest
from commands_world import RefusingCarrier, World, cancelled, info_updated, shipped, status_set

from services.standins.sandbox_carrier import SandboxCarrier

import harness
from harness import CARRIER_PASSWORD, wait_until


@pytest.fixture
def world(pipeline_factory):
    with (
        SandboxCarrier(username="user", password=CARRIER_PASSWORD) as other,
        RefusingCarrier(username="user", password=CARRIER_PASSWORD) as refusing,
    ):
        yield World(pipeline_factory(), other, refusing)


def _sequences_gapless(w: World, package_id: str) -> None:
    sequences = [c["sequence"] for c in w.changes(package_id)]
    assert sequences == list(range(1, len(sequences) + 1)), sequences


def test_a_cancellation_while_the_registration_is_in_flight_is_deleted_at_the_carrier(world):
    w = world.start()
    w.sandbox.stall_next(1, 3.0)  # the registration's answer comes 3 s late
    w.pack("R-CANCEL")
    wait_until(lambda: w.sandbox._stalls == [], 10, message="the registration to be in flight")
    w.publish(cancelled("R-CANCEL"))
    w.wait_status("R-CANCEL", "cancelled", timeout=10)
    assert w.carrier_requests(w.sandbox, "R-CANCEL") == []  # the cancellation committed before the answer
    wait_until(lambda: [r[0] for r in w.carrier_requests(w.sandbox, "R-CANCEL")] == ["POST", "DELETE"], 20)
    post, delete = [r for r in w.sandbox.requests if r.shipment_id == w.shipment("R-CANCEL")["id"]]
    assert (post.status, delete.status) == (201, 204) and delete.started >= post.ended
    assert w.history("R-CANCEL") == ["pending", "cancelled"]  # its registration never recorded
    time.sleep(1.0)
    assert w.history("R-CANCEL") == ["pending", "cancelled"]


def test_an_employees_status_set_during_a_carrier_poll_is_never_moved_back(world):
    w = world.start()
    w.pack("R-SET", order_number="ORD-ATT-R-SET")  # the carrier answers SHIPPING, then ATTEMPTED_DELIVERY
    w.publish(shipped("R-SET"))
    w.wait_status("R-SET", "shipped")
    shipment_id = w.shipment("R-SET")["id"]
    wait_until(lambda: any(r.method == "GET" and r.shipment_id == shipment_id for r in w.sandbox.requests), 10)
    gets = sum(1 for r in w.sandbox.requests if r.method == "GET" and r.shipment_id == shipment_id)
    w.sandbox.stall_next(1, 2.5)  # the next poll's answer (ATTEMPTED_DELIVERY) comes late
    wait_until(lambda: w.sandbox._stalls == [], 10, message="a poll to be in flight")
    w.publish(status_set("R-SET", "delivered"))
    w.wait_status("R-SET", "delivered", timeout=10)
    wait_until(
        lambda: sum(1 for r in w.sandbox.requests if r.method == "GET" and r.shipment_id == shipment_id) > gets,
        10,
        message="the stalled poll to be answered",
    )
    time.sleep(1.0)
    assert w.history("R-SET") == ["pending", "registered", "shipped", "delivered"]
    _sequences_gapless(w, "R-SET")


def test_a_non_final_status_set_and_a_later_carrier_answer_keep_one_gapless_sequence(world):
    w = world.start()
    w.pack("R-RFP", order_number="ORD-ATT-R-RFP")
    w.publish(shipped("R-RFP"))
    w.wait_status("R-RFP", "shipped")
    w.publish(status_set("R-RFP", "ready_for_pickup"))
    w.wait_status("R-RFP", "ready_for_pickup")
    time.sleep(1.5)  # the carrier keeps answering ATTEMPTED_DELIVERY: lower, never applied
    assert w.history("R-RFP") == ["pending", "registered", "shipped", "ready_for_pickup"]
    _sequences_gapless(w, "R-RFP")


# ---- kill -9 between the commit and the ack ----------------------------------------------------


def _armed_shipper(w: World, crash_at: str) -> harness.ServiceProcess:
    env = {**w.pipeline.env, "OMS_FAULT_CRASH_AT": crash_at}
    process = harness.ServiceProcess("shipper", env, w.pipeline.tmp_path / f"shipper-{crash_at}.log").start()
    w.pipeline.processes.append(process)
    return process


def _crashed(process: harness.ServiceProcess) -> None:
    wait_until(
        lambda: process.process.poll() is not None,
        30,
        message=f"the shipper to reach {process.env['OMS_FAULT_CRASH_AT']}",
    )
    assert process.process.returncode == -9, process.log_text()[-2000:]


@pytest.mark.parametrize("crash_at", ["after_commit:shipper:1", "after_carrier_deletion:1"])
def test_a_shipper_killed_after_applying_a_command_applies_each_command_once(world, crash_at):
    w = world
    for service in ("packer", "tracker", "omnitron-publisher"):
        w.pipeline.start(service)
    [shipper] = w.pipeline.start("shipper")
    w.pack("K-CANCEL")
    for package_id in ("K-INFO", "K-SET"):
        w.pack(package_id, order_number=f"ORD-HOLD-{package_id}")
        w.publish(shipped(package_id))
    w.wait_status("K-CANCEL", "registered")
    w.wait_status("K-INFO", "shipped")
    w.wait_status("K-SET", "shipped")
    assert shipper.terminate() == 0

    commands = [("K-CANCEL", cancelled("K-CANCEL"))]
    if crash_at.startswith("after_commit"):
        commands += [
            ("K-INFO", info_updated("K-INFO", shipping_company="Acme Cargo")),
            ("K-SET", status_set("K-SET", "delivered")),
        ]
    for _package_id, command in commands:
        armed = _armed_shipper(w, crash_at)
        w.publish(command)
        _crashed(armed)  # applied (or deleted at the carrier), not acked
    w.pipeline.start("shipper")
    w.wait_status("K-CANCEL", "cancelled")
    assert w.history("K-CANCEL") == ["pending", "registered", "cancelled"]
    deletes = [r for r in w.carrier_requests(w.sandbox, "K-CANCEL") if r[0] == "DELETE"]
    if crash_at.startswith("after_commit"):
        assert deletes == [("DELETE", "/{id}", 204)]
        wait_until(lambda: w.shipment("K-INFO")["shipping_company"] == "Acme Cargo", 10)
        w.wait_status("K-SET", "delivered")
        time.sleep(1.0)  # the redelivered copies are absorbed by the inbox
        assert w.history("K-INFO") == ["pending", "registered", "shipped", "shipped"]
        assert w.history("K-SET") == ["pending", "registered", "shipped", "delivered"]
    else:  # deleted, killed before the commit: deleted again (the stand-in answers 204 again; 404 would count
        # as done too), cancelled once
        assert deletes == [("DELETE", "/{id}", 204), ("DELETE", "/{id}", 204)]
    assert w.dead_letters() == []


# ---- carrier changes under load -------------------------------------------------------------------


def test_carrier_changes_racing_hand_overs_never_leave_a_shipment_polled_at_both_carriers(world):
    w = world.start()
    packages = [f"L-{n:03d}" for n in range(40)]
    for package_id in packages:
        w.pack(package_id, order_number=f"ORD-HOLD-{package_id}")
    for package_id in packages:
        w.wait_status(package_id, "registered")
    for n, package_id in enumerate(packages):  # the hand-over and the change race each other
        first, second = shipped(package_id), info_updated(package_id, carrier="other")
        for event in (first, second) if n % 2 else (second, first):
            w.publish(event)
    for package_id in packages:
        w.wait_status(package_id, "shipped")
    time.sleep(2.0)  # several poll intervals
    refused = {letter["package_id"] for letter in w.dead_letters()}
    moved = {p for p in packages if w.shipment(p)["carrier"] == "other"}
    assert moved | refused == set(packages) and not moved & refused
    assert moved, "no carrier change won its race"
    for package_id in packages:
        shipment = w.shipment(package_id)
        polled_at = {
            name
            for name, carrier in (("sandbox", w.sandbox), ("other", w.other))
            if any(r[0] == "GET" for r in w.carrier_requests(carrier, package_id))
        }
        assert polled_at == {shipment["carrier"]}, (package_id, polled_at, shipment["carrier"])
        _sequences_gapless(w, package_id)
